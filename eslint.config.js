// Flat config: typescript-eslint's recommended rules over every TypeScript source.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.stryker-tmp/', 'reports/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    // Node's globals `Buffer`, `process` and `performance` are accessors on globalThis: every use
    // goes through a slow global lookup and a getter call, which showed in the request path's
    // profile. Imported, they are plain module bindings.
    files: ['lib/**/*.ts', 'strategies/**/*.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        { name: 'Buffer', message: "import { Buffer } from 'node:buffer'" },
        { name: 'process', message: "import process from 'node:process'" },
        { name: 'performance', message: "import { performance } from 'node:perf_hooks'" },
      ],
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
)
