import base from './playwright.config';
import { defineConfig } from '@playwright/test';

// Not part of `cargo xtask test`: captures fixtures from the current release, run by hand
// when a storage layout is about to change (see `profile_fixture.capture.ts`).
export default defineConfig({ ...base, testMatch: '*.capture.ts', timeout: 300_000 });
