import type { Migration } from './index.ts';

/**
 * Whether a message's usage was counted by Sluice (the provider reported none) rather than by the
 * provider: 1 when estimated, NULL otherwise (and for the rows written before this version, whose
 * mark was not kept).
 */
export const usageEstimated: Migration = {
  version: 2,
  name: 'usage estimated',
  statements: [`ALTER TABLE history_messages ADD COLUMN usage_estimated INTEGER`],
};
