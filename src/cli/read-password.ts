// A new password: typed twice without echo at a terminal, or the first line of piped input
// (`printf '%s\n' "$PW" | mlgate user add bob`), so scripts never put it on a command line.

const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const BACKSPACES = ['\u007f', '\b'];

export async function readNewPassword(user: string): Promise<string> {
  if (!process.stdin.isTTY) {
    const password = await readFirstLine(process.stdin);
    if (password === undefined) throw new Error('no password on standard input (pipe it in, or run this at a terminal to be asked)');
    return password;
  }
  const password = await promptHidden(`New password for ${user}: `);
  const again = await promptHidden('Repeat it: ');
  if (password !== again) throw new Error('the two passwords do not match; nothing was changed');
  return password;
}

/** The first line without its line ending; undefined when the input is empty. */
async function readFirstLine(input: NodeJS.ReadableStream): Promise<string | undefined> {
  let text = '';
  let sawData = false;
  for await (const chunk of input) {
    sawData = true;
    text += chunk.toString();
    if (text.includes('\n')) break;
  }
  if (!sawData) return undefined;
  return text.split('\n')[0]!.replace(/\r$/, '');
}

function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  // Echo goes off before the prompt appears, so nothing typed after seeing it is ever shown.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (error?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(typed);
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n') return finish();
        if (char === CTRL_C || char === CTRL_D) return finish(new Error('cancelled; nothing was changed'));
        if (BACKSPACES.includes(char)) typed = [...typed].slice(0, -1).join('');
        else typed += char;
      }
    };
    stdin.on('data', onData);
  });
}
