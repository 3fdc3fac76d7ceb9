#!/usr/bin/env node
import { Command } from 'commander';
import { VERSION } from '../version.ts';
import { registerCert } from './cert.ts';
import { registerConfigCheck } from './config-check.ts';
import { registerGrant } from './grant.ts';
import { registerServe } from './serve.ts';
import { registerToken } from './token.ts';
import { registerUser } from './user.ts';

const program = new Command('mlgate')
  .description('Authentication gateway for MLflow tracking servers')
  .version(VERSION)
  .showHelpAfterError();

registerServe(program);
registerUser(program);
registerToken(program);
registerCert(program);
registerConfigCheck(program);
registerGrant(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`mlgate: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
