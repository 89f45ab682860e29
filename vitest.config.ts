import { defineConfig } from 'vitest/config';

// Tests start real processes (sshd, the embedded master, the agent), so they get generous time
// and run files in separate forks; speed is measured in bench/, never here.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test-support/**/*.test.ts', 'scripts/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
