/** Tests run against the TypeScript sources (ts-jest, transpile only: `npm run build` type-checks),
 * and integration tests start the built CLI from dist/ with real DCMTK / Orthanc peers. */
module.exports = {
  testEnvironment: '<rootDir>/test/helpers/node-environment.js',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
  testTimeout: 60000,
};
