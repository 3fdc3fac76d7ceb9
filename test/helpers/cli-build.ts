// Global setup: a directory of the run's own, where test workers agree on which of them gets the
// compiled CLI ready (test/helpers/compiled-cli.ts). Nothing is built here: runs that never start
// the CLI pay nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where the run's test workers meet to get the compiled CLI once. */
    cliBuildDir: string;
  }
}

export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'mlgate-cli-build-'));
  project.provide('cliBuildDir', dir);
  return () => rmSync(dir, { recursive: true, force: true });
}
