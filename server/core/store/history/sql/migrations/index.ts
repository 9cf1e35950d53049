import { initial } from './0001-initial.ts';
import { usageEstimated } from './0002-usage-estimated.ts';
import { draftsIndex } from './0003-drafts-index.ts';
import { sessionOwners } from './0004-session-owners.ts';

/** The SQL databases the history runs on. */
export type Dialect = 'sqlite' | 'postgres';

/**
 * One step of the schema, in SQL that SQLite and PostgreSQL both run. A migration is never edited
 * once released: a change is a new one with the next version.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  /** For one database only (the others record the version and run nothing, so versions stay one sequence). */
  readonly only?: Dialect;
  readonly statements: readonly string[];
}

/** In version order, without gaps. */
export const MIGRATIONS: readonly Migration[] = [initial, usageEstimated, draftsIndex, sessionOwners];
