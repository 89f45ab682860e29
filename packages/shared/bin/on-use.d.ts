/** Bare specifier -> file URL of the stand-in that loads it on first use. */
export const ON_USE: Readonly<Record<string, string>>;
/** Resolve the ON_USE specifiers to their stand-ins in this process (module.registerHooks). */
export function loadOnUse(): void;
