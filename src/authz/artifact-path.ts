// Artifact paths carry no resource id the gateway can look up, only a place in a tree: the
// experiment is the first segment of a proxied path (mlflow-artifacts:/<experiment_id>/...), and
// every other artifact path is relative to a run, model version or trace already checked.
// With MLflow's workspaces a proxied path may start `workspaces/<workspace>/`, which MLflow takes
// only for the request's own workspace (it puts every other workspace's paths there itself).
// MLflow's validate_path_is_safe decodes a path up to ten times before use, so anything that
// could still decode, or step out of its directory, is refused here instead of guessed at.

import { DEFAULT_WORKSPACE } from './workspace.ts';

/** Experiment ids of MLflow's stores are integers; Python's int() would also take "+1", " 1" or "1_0". */
export const EXPERIMENT_ID = /^(?:0|[1-9][0-9]{0,18})$/;

const LEFT_TO_DECODE = /%[0-9A-Fa-f]{2}/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const DRIVE_OR_FILE_URI = /^(?:[A-Za-z]:|file:)/i;

/** Why a path relative to some artifact root is unsafe, or undefined if it is not. '' is the root itself. */
export function relativePathProblem(path: string): string | undefined {
  if (path === '') return undefined;
  if (path.startsWith('/')) return 'is absolute';
  if (DRIVE_OR_FILE_URI.test(path)) return 'names a drive or a file: URI';
  if (path.includes('\\')) return 'contains a backslash';
  if (path.includes('#')) return 'contains "#"';
  if (CONTROL.test(path)) return 'contains a control character';
  if (LEFT_TO_DECODE.test(path)) return 'is percent-encoded (MLflow would decode it again)';
  const segments = path.split('/');
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    if (segment === '.' || segment === '..') return `has a "${segment}" segment`;
    if (segment === '' && i < segments.length - 1) return 'has an empty segment ("//")';
  }
  return undefined;
}

type ArtifactExperiment = { ok: true; experimentId: string } | { ok: false; reason: string };

/**
 * The experiment a proxied artifact path lives in, for a request in `workspace`. `wholeExperiment`
 * allows the bare `<id>` (listing an experiment's root); reading or writing needs a file below it,
 * so that no one writes a file in place of an experiment's directory.
 */
export function experimentOfArtifactPath(whole: string, wholeExperiment: boolean, workspace: string): ArtifactExperiment {
  const problem = relativePathProblem(whole);
  if (problem) return { ok: false, reason: `artifact path ${problem}` };
  // MLflow (_get_workspace_scoped_repo_path_if_enabled) serves `workspaces/<w>/...` only in <w>,
  // and roots every other path of a non-default workspace there: either way the rest of the path
  // is the request's workspace's, and starts with one of its experiments.
  let path = whole;
  if (path === 'workspaces' || path.startsWith('workspaces/')) {
    const [, named = '', ...rest] = path.split('/');
    if (named !== workspace) {
      return { ok: false, reason: `artifact path is in workspace ${JSON.stringify(named.slice(0, 100))}, not in the request's workspace ${workspace}${workspace === DEFAULT_WORKSPACE ? ' (name it in X-MLFLOW-WORKSPACE)' : ''}` };
    }
    path = rest.join('/');
  }
  const slash = path.indexOf('/');
  const first = slash === -1 ? path : path.slice(0, slash);
  if (!EXPERIMENT_ID.test(first)) return { ok: false, reason: 'artifact path does not start with an experiment id (<digits>/...)' };
  const rest = slash === -1 ? '' : path.slice(slash + 1);
  if (rest === '' && !wholeExperiment) return { ok: false, reason: 'artifact path names an experiment directory, not a file in it' };
  return { ok: true, experimentId: first };
}

/** The local file name the multipart-upload routes append (as its basename) to the checked directory. */
export function fileNameProblem(name: string): string | undefined {
  const base = name.slice(name.lastIndexOf('/') + 1);
  if (base === '' || base === '.' || base === '..') return 'does not end in a file name';
  if (CONTROL.test(name)) return 'contains a control character';
  return undefined;
}
