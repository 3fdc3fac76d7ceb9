// The /-/permissions page: what the signed-in user can manage, who has what, and forms to grant and
// revoke. Self-contained like the sign-in page (no external assets, no script), usable with a
// keyboard and a screen reader, and working without JavaScript: every button is a plain form POST.
import type { PermissionsView } from '../authz/grants-client.ts';
import { PERMISSION_LEVELS } from '../authz/levels.ts';
import { DEFAULT_WORKSPACE } from '../authz/workspace.ts';
import { escapeHtml } from '../http/errors.ts';
import { htmlPage, managementPageStyle, pageHeaders } from './page-frame.ts';

const STYLE = managementPageStyle(`
h3{font-size:1.05rem;margin:0 0 .5rem;overflow-wrap:anywhere}
form.workspace{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-end;margin:1rem 0}
`);

/** Nothing loads from anywhere, no script runs, forms post only here, never framed or cached. */
export const PERMISSIONS_PAGE_HEADERS = pageHeaders(STYLE);

interface PermissionsPageOptions {
  user: string;
  /** Signed in with the session cookie: show the sign-out link. */
  signOut: boolean;
  experiments: readonly PermissionsView[];
  models: readonly PermissionsView[];
  truncated: boolean;
  /**
   * The MLflow workspace shown, with a field to choose another; undefined on a server without
   * workspaces (the page is then as it always was: everything is in the default workspace).
   */
  workspace?: string;
  notice?: string;
  error?: string;
}

const ACTION = '/-/permissions';

export function permissionsPage(options: PermissionsPageOptions): string {
  const parts = ['<h1>Permissions</h1>'];
  parts.push(`<p>Signed in as <strong>${escapeHtml(options.user)}</strong>.${options.signOut ? ' <a href="/-/logout">Sign out</a> ·' : ''} <a href="/">Back to MLflow</a></p>`);
  if (options.error) parts.push(`<p class="error" role="alert">${escapeHtml(options.error)}</p>`);
  if (options.notice) parts.push(`<p class="status" role="status">${escapeHtml(options.notice)}</p>`);
  parts.push('<p class="hint">These are the experiments and registered models on which you hold MANAGE. A grant to a user or a group (<code>@team</code>) sets their level on that one resource: READ reads, EDIT also writes runs, models and artifacts, MANAGE also deletes and grants, NO_PERMISSIONS shuts them out. Without a grant, levels come from the policy file and the default.</p>');
  if (options.workspace !== undefined) parts.push(workspaceChooser(options.workspace));
  if (options.truncated) parts.push('<p class="hint">Only the first resources of this server were examined; use <code>mlgate permissions</code> or the API for the others.</p>');

  parts.push('<h2 id="experiments">Experiments</h2>');
  if (options.experiments.length === 0) parts.push('<p>None.</p>');
  const inWorkspaces = options.workspace !== undefined;
  options.experiments.forEach((view, i) => parts.push(resourceSection(view, `e${i}`, inWorkspaces)));
  parts.push('<h2 id="models">Registered models</h2>');
  if (options.models.length === 0) parts.push('<p>None.</p>');
  options.models.forEach((view, i) => parts.push(resourceSection(view, `m${i}`, inWorkspaces)));
  return htmlPage('Permissions', parts.join('\n'), STYLE);
}

/** Which workspace's resources are listed, and a plain GET form to list another's. */
function workspaceChooser(workspace: string): string {
  return `<form method="get" action="${ACTION}" class="workspace" aria-label="Workspace">
<div><label for="workspace">Workspace</label><input id="workspace" name="workspace" value="${escapeHtml(workspace)}" required autocapitalize="none" spellcheck="false" autocomplete="off" aria-describedby="workspace-hint"></div>
<div><button type="submit" class="secondary">Show</button></div>
<p id="workspace-hint" class="hint">Listed below: workspace <strong>${escapeHtml(workspace)}</strong>. Names are unique only within a workspace; <code>${DEFAULT_WORKSPACE}</code> is MLflow's default one.</p>
</form>`;
}

function title(view: PermissionsView): string {
  const what = view.kind === 'experiment' ? `experiment ${view.name} (id ${view.id})` : `registered model ${view.name}`;
  return view.workspace === DEFAULT_WORKSPACE ? what : `${what} in workspace ${view.workspace}`;
}

function hidden(name: string, value: string): string {
  return `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`;
}

function resourceSection(view: PermissionsView, key: string, inWorkspaces: boolean): string {
  const resource = view.kind === 'experiment' ? view.id! : view.name;
  // Every form names the resource's workspace, so it acts where the resource was listed.
  const where = inWorkspaces ? hidden('workspace', view.workspace) : '';
  const what = title(view);
  const heading = view.kind === 'experiment'
    ? `${escapeHtml(view.name)} <small>id ${escapeHtml(view.id!)}</small>`
    : escapeHtml(view.name);
  const rows = [
    ...view.users.map((grant) => ({ who: grant.name, spelled: grant.name, kind: 'user', level: grant.level })),
    ...view.groups.map((grant) => ({ who: `@${grant.name}`, spelled: `@${grant.name}`, kind: 'group', level: grant.level })),
  ];
  const table = rows.length === 0
    ? '<p>No grants yet.</p>'
    : `<table>
<caption class="vh">Grants on ${escapeHtml(what)}</caption>
<thead><tr><th scope="col">User or group</th><th scope="col">Level</th><th scope="col"><span class="vh">Action</span></th></tr></thead>
<tbody>
${rows.map((row) => `<tr><td>${escapeHtml(row.who)} <small>${row.kind}</small></td><td>${row.level}</td><td><form method="post" action="${ACTION}">${hidden('action', 'revoke')}${hidden('kind', view.kind)}${hidden('resource', resource)}${where}${hidden('grantee', row.spelled)}<button type="submit" class="secondary" aria-label="Revoke ${escapeHtml(`${row.level} of ${row.kind} ${row.who.replace(/^@/, '')} on ${what}`)}">Revoke</button></form></td></tr>`).join('\n')}
</tbody></table>`;
  return `<section aria-labelledby="${key}-title">
<h3 id="${key}-title">${heading}</h3>
${inWorkspaces ? `<p>Workspace: <strong>${escapeHtml(view.workspace)}</strong></p>\n` : ''}<p>Owner: ${view.owner ? `<strong>${escapeHtml(view.owner)}</strong>` : '<span class="hint">none recorded</span>'}</p>
${table}
<form method="post" action="${ACTION}">
${hidden('action', 'grant')}${hidden('kind', view.kind)}${hidden('resource', resource)}${where}
<fieldset><legend>Grant access to ${escapeHtml(what)}</legend>
<div><label for="${key}-who">User, or @group</label><input id="${key}-who" name="grantee" required autocapitalize="none" spellcheck="false" autocomplete="off" aria-describedby="${key}-who-hint"></div>
<div><label for="${key}-level">Level</label><select id="${key}-level" name="level">${PERMISSION_LEVELS.map((level) => `<option${level === 'READ' ? ' selected' : ''}>${level}</option>`).join('')}</select></div>
<div><button type="submit">Grant</button></div>
<p id="${key}-who-hint" class="hint">e.g. <code>alice</code> or <code>@team-a</code>; a new grant replaces the previous one.</p>
</fieldset>
</form>
</section>`;
}
