import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'jest.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  // The product makes ULIDs through platform/ids.ts (one CSPRNG fill per 4 KiB), never through the ulid package's
  // own generator, which asks the CSPRNG once per character.
  {
    files: ['{server,api,workers,cli,application,models,queues,gateway,documents,domain,platform}/**/*.ts'],
    ignores: ['platform/ids.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: [{ name: 'ulid', message: "import { ulid } from platform/ids.ts: the pooled CSPRNG's source" }] },
      ],
    },
  },
  // Tests read JSON response bodies loosely; product code never uses `any`.
  { files: ['test/**/*.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  {
    files: ['eslint.config.mjs', 'scripts/**/*.cjs', '.dependency-cruiser.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['scripts/**/*.cjs', '.dependency-cruiser.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        process: 'readonly',
        console: 'readonly',
        fetch: 'readonly',
        AbortSignal: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
