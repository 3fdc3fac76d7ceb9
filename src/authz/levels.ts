// Permission levels as MLflow names them, so grants, policy files and error messages read the same
// as in MLflow's own auth app. MLflow 3.9+ also has USE (AI gateway objects only); mlgate keeps
// those admin-only, so it has no use for it.

export const PERMISSION_LEVELS = ['NO_PERMISSIONS', 'READ', 'EDIT', 'MANAGE'] as const;

export type PermissionLevel = (typeof PERMISSION_LEVELS)[number];

const RANK: Readonly<Record<PermissionLevel, number>> = { NO_PERMISSIONS: 0, READ: 1, EDIT: 2, MANAGE: 3 };

export function levelRank(level: PermissionLevel): number {
  return RANK[level];
}

/** True when `have` allows what `need` asks for. */
export function atLeast(have: PermissionLevel, need: PermissionLevel): boolean {
  return RANK[have] >= RANK[need];
}

/** NO_PERMISSIONS for none: a user with no grant at all has nothing. */
export function highestLevel(levels: Iterable<PermissionLevel>): PermissionLevel {
  let best: PermissionLevel = 'NO_PERMISSIONS';
  for (const level of levels) if (RANK[level] > RANK[best]) best = level;
  return best;
}

/** Accepts any case ("edit") because people type these in policy files and on the command line. */
export function parsePermissionLevel(text: string): PermissionLevel | undefined {
  const upper = text.trim().toUpperCase();
  return (PERMISSION_LEVELS as readonly string[]).includes(upper) ? (upper as PermissionLevel) : undefined;
}
