import { initial } from './0001-initial.ts';
import { usageEstimated } from './0002-usage-estimated.ts';

/**
 * One step of the schema, in SQL that SQLite and PostgreSQL both run. A migration is never edited
 * once released: a change is a new one with the next version.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly statements: readonly string[];
}

/** In version order, without gaps. */
export const MIGRATIONS: readonly Migration[] = [initial, usageEstimated];
