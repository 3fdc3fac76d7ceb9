// One sentence per schema problem, worded for someone editing a YAML file rather than a programmer:
// "must be a whole number, got 1.5" instead of zod's "Invalid input: expected int, received number".
import type { z } from 'zod';

type Issue = z.core.$ZodIssue & { input?: unknown };

const EXPECTED: Record<string, string> = {
  number: 'a number',
  int: 'a whole number',
  string: 'text',
  boolean: 'true or false',
  object: 'a mapping of keys to values',
  array: 'a list',
};

/** `showInput: false` for secret keys: the offending value is then never echoed. */
export function describeIssue(issue: Issue, showInput: boolean): string {
  if (issue.code === 'invalid_type' && issue.input === null) return 'has no value (remove the key to use the default)';
  const rule = ruleBroken(issue);
  const shown = showInput && issue.input !== undefined && issue.input !== ''
    && (issue.code === 'invalid_type' || issue.code === 'invalid_union' || isPrimitive(issue.input));
  return shown ? `${rule}, got ${describeValue(issue.input)}` : rule;
}

function ruleBroken(issue: Issue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${EXPECTED[issue.expected] ?? issue.expected}`;
    case 'too_small':
      if (issue.origin === 'string' && Number(issue.minimum) === 1) return 'must not be empty';
      if (issue.origin === 'string') return `must be at least ${issue.minimum} characters long`;
      if (issue.origin === 'array') return `must have at least ${issue.minimum} entries`;
      return issue.inclusive ? `must be at least ${issue.minimum}` : `must be more than ${issue.minimum}`;
    case 'too_big':
      if (issue.origin === 'array') return `must have at most ${issue.maximum} entries`;
      if (issue.origin === 'string') return `must be at most ${issue.maximum} characters long`;
      return issue.inclusive ? `must be at most ${issue.maximum}` : `must be less than ${issue.maximum}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `must be ${describeValue(issue.values[0])}`
        : `must be one of ${issue.values.map(describeValue).join(', ')}`;
    case 'unrecognized_keys':
      return 'unknown key';
    default:
      // Refinements, formats and unions carry the rule the schema wrote for them.
      return issue.message;
  }
}

function isPrimitive(value: unknown): boolean {
  return ['string', 'number', 'boolean'].includes(typeof value);
}

function describeValue(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'nothing';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value !== 'string') return String(value);
  const quoted = JSON.stringify(value);
  return quoted.length > 60 ? `${quoted.slice(0, 56)}..."` : quoted;
}
