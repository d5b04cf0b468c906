export * from './rows';
export * from './store';
export * from './files';
export { MIGRATIONS, SCHEMA_VERSION } from './schema';
export * from './studyFiles';
