// MLflow's workspaces (3.10+, `mlflow server --enable-workspaces` with a SQL store): every
// experiment, run, model, prompt and trace lives in one workspace, and a request acts in the one its
// X-MLFLOW-WORKSPACE header names. The gateway reads that header the way MLflow does, once, and
// everything after (look-ups, caches, decisions, the header MLflow gets) follows what it read.
import type { IncomingHttpHeaders } from 'node:http';

/** The workspace of a request without the header, and the only one of a server without workspaces. */
export const DEFAULT_WORKSPACE = 'default';

/** The header naming the workspace (lower-case, as Node gives header names). */
export const WORKSPACE_HEADER = 'x-mlflow-workspace';

/** MLflow's own rule for workspace names (WorkspaceNameValidator: Kubernetes-style, 2-63 characters). */
export const WORKSPACE_NAME = /^(?!.*--)[a-z0-9][-a-z0-9]{0,61}[a-z0-9]$/;

/** Names MLflow keeps for itself: no workspace is called so. */
const RESERVED = new Set(['workspaces', 'api', 'ajax-api', 'static-files']);

type RequestWorkspace = { ok: true; workspace: string } | { ok: false; reason: string };

/**
 * A workspace a person named (the header, `mlgate grant --workspace`, the permissions API's
 * parameter, the page's field), by MLflow's rule: trimmed; empty or "default" is the default one.
 */
export function parseWorkspace(text: string): RequestWorkspace {
  const workspace = text.trim();
  if (workspace === '' || workspace === DEFAULT_WORKSPACE) return { ok: true, workspace: DEFAULT_WORKSPACE };
  if (!WORKSPACE_NAME.test(workspace) || RESERVED.has(workspace)) {
    const shown = JSON.stringify(workspace.length > 100 ? `${workspace.slice(0, 100)}...` : workspace);
    return { ok: false, reason: `${shown} is not a workspace name: 2-63 lowercase letters, digits and inner hyphens` };
  }
  return { ok: true, workspace };
}

/**
 * The workspace a request acts in, as MLflow resolves it (resolve_workspace_from_header): the
 * header's value trimmed; none or empty is the default workspace. A value MLflow would refuse is
 * refused here too; so are two values (MLflow's two layers would read different ones) and the
 * underscore spelling (a WSGI layer may read it as the same header).
 */
export function requestWorkspace(headers: IncomingHttpHeaders): RequestWorkspace {
  if (headers.x_mlflow_workspace !== undefined) {
    return { ok: false, reason: 'send the workspace as X-MLFLOW-WORKSPACE, not X_MLFLOW_WORKSPACE' };
  }
  const value = headers[WORKSPACE_HEADER];
  if (value === undefined) return { ok: true, workspace: DEFAULT_WORKSPACE };
  if (Array.isArray(value) || value.includes(',')) return { ok: false, reason: 'name one workspace in X-MLFLOW-WORKSPACE, not several' };
  const parsed = parseWorkspace(value);
  return parsed.ok ? parsed : { ok: false, reason: `X-MLFLOW-WORKSPACE: ${parsed.reason}` };
}
