import { defineConfig } from '@playwright/test';

// Runs inside the private network namespace made by netns.sh: the app and ferry-signal are on
// 127.0.0.1, WebRTC uses the namespace's TEST-NET veth address. Nothing leaves the machine.
export default defineConfig({
  testDir: '.',
  testMatch: '*.spec.ts',
  timeout: 90_000,
  expect: { timeout: 20_000 },
  workers: 1,
  retries: 0,
  reporter: [['list']],
  outputDir: '../../target/e2e-results',
  use: {
    baseURL: process.env.FERRY_APP_URL ?? 'http://127.0.0.1:8080',
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
  },
});
