#!/usr/bin/env node
// The `sluice-chat` bin: runs the TypeScript entry through tsx (a dependency), from wherever
// the package is installed.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
