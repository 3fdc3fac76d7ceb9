// The default reporter counts skipped tests but names none of them, so a suite that quietly skips
// (no Chromium, no htpasswd binary, port 5000 busy) looks as green as one that ran everything.
// Every skip is listed at the end, with the reason: the test's title, or the note given to skip().
import type { Reporter, TestModule } from 'vitest/node';

export default class SkippedReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const lines: string[] = [];
    for (const module of testModules) {
      for (const test of module.children.allTests('skipped')) {
        const result = test.result();
        const note = result.state === 'skipped' ? result.note : undefined;
        const how = test.options.mode === 'todo' ? 'todo: ' : '';
        lines.push(`skipped: ${how}${module.relativeModuleId} > ${test.fullName}${note ? ` (${note})` : ''}`);
      }
    }
    if (lines.length) process.stdout.write(`\n${lines.join('\n')}\n`);
  }
}
