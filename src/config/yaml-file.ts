// The configuration file as YAML: its values, and the line every key path was written on.
import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';

export interface FileProblem {
  line: number;
  col: number;
  /** Where the problem is, when it is about a key: shown as "tls.cert". */
  path?: (string | number)[];
  message: string;
}

export interface YamlFile {
  /** The document's value, or undefined when it could not be read as a mapping. */
  value?: Record<string, unknown>;
  problems: FileProblem[];
  /** Line and column of a key path, or of the deepest part of it that is in the file. */
  locate(path: readonly (string | number)[]): { line: number; col: number };
}

const READ_ERRORS: Record<string, string> = {
  ENOENT: 'configuration file not found',
  EACCES: 'configuration file is not readable (permission denied)',
  EISDIR: 'is a directory, not a configuration file',
};

export function readYamlFile(file: string): YamlFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const message = READ_ERRORS[code] ?? `cannot read the configuration file: ${(err as Error).message}`;
    return { problems: [{ line: 0, col: 0, message }], locate: () => ({ line: 0, col: 0 }) };
  }
  return parseYamlText(text);
}

export function parseYamlText(text: string): YamlFile {
  const lines = new LineCounter();
  // Duplicates are found below, with the key's path and both lines, rather than as a bare syntax error.
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false });
  const at = (offset: number) => lines.linePos(offset);
  const locate = (path: readonly (string | number)[]) => at(offsetOf(doc, path));

  const problems: FileProblem[] = [...doc.errors, ...doc.warnings].map((error) => ({
    ...at(error.pos[0]),
    message: `invalid YAML: ${error.message.split('\n')[0]}`,
  }));
  if (problems.length) return { problems, locate };

  problems.push(...duplicateKeys(doc.contents, [], at));
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return { value: {}, problems, locate };
  if (typeof value !== 'object' || Array.isArray(value)) {
    const kind = Array.isArray(value) ? 'a list' : 'a single value';
    problems.push({ ...locate([]), message: `the file must be a mapping of keys to values (like "port: 8888"), not ${kind}` });
    return { problems, locate };
  }
  return { value: value as Record<string, unknown>, problems, locate };
}

function keyText(key: unknown): string {
  return String(isScalar(key) ? key.value : key);
}

function duplicateKeys(node: unknown, path: (string | number)[], at: (offset: number) => { line: number; col: number }): FileProblem[] {
  const problems: FileProblem[] = [];
  if (isMap(node)) {
    const firstLine = new Map<string, number>();
    for (const pair of node.items) {
      const key = keyText(pair.key);
      const position = at((pair.key as Node | null)?.range?.[0] ?? 0);
      const earlier = firstLine.get(key);
      if (earlier === undefined) firstLine.set(key, position.line);
      else problems.push({ ...position, path: [...path, key], message: `duplicate key (first set on line ${earlier})` });
      problems.push(...duplicateKeys(pair.value, [...path, key], at));
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => problems.push(...duplicateKeys(item, [...path, index], at)));
  }
  return problems;
}

function offsetOf(doc: Document, path: readonly (string | number)[]): number {
  let node: unknown = doc.contents;
  let offset = (node as Node | null)?.range?.[0] ?? 0;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => keyText(item.key) === String(key));
      if (!pair) break;
      offset = (pair.key as Node | null)?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number' && node.items[key]) {
      node = node.items[key];
      offset = (node as Node).range?.[0] ?? offset;
    } else {
      break;
    }
  }
  return offset;
}
