import type { inferRouterError, inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import type { AppRouter as Contract } from '../shared/app-router.ts';
import type { AppRouter as Built } from './transport/trpc/router.ts';

/** The router's type, as the server builds it (with its context). Clients use shared/app-router.ts. */
export type { AppRouter } from './transport/trpc/router.ts';

// The router is held to the contract clients are built against (shared/app-router.ts): the same
// procedures of the same kinds, inputs, outputs and errors. A difference fails the type check.
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Kinds<R> = { [K in keyof R]: R[K] extends { _def: { type: infer T } } ? T : Kinds<R[K]> };
type Holds<T extends true> = T;

export type RouterMatchesContract = [
  Holds<Same<inferRouterInputs<Built>, inferRouterInputs<Contract>>>,
  Holds<Same<inferRouterOutputs<Built>, inferRouterOutputs<Contract>>>,
  Holds<Same<inferRouterError<Built>, inferRouterError<Contract>>>,
  Holds<Same<Kinds<Built['_def']['record']>, Kinds<Contract['_def']['record']>>>,
];
