import { register } from 'node:module';

// `node --import ./test/helpers/hold-packages.ts`: module hooks that hold the process's first
// load of a package (anything under node_modules) until the file named by HOLD_PACKAGES_UNTIL
// exists, saying `holding packages` on stderr when they start to. A test sees what the process
// does before its packages load (the window in which a server has run only its own first lines).
register('./hold-packages-hooks.ts', import.meta.url, { data: { until: process.env.HOLD_PACKAGES_UNTIL } });
