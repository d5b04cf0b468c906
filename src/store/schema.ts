/**
 * The SQLite schema, as an ordered list of migrations. A database records which versions it has
 * applied in `schema_migrations`; opening it applies the missing ones in one transaction each.
 * Never edit a released migration: append a new one.
 *
 * Times are integer milliseconds since the Unix epoch (comparisons and arithmetic in SQL stay
 * trivial; the dashboard formats them).
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
  /**
   * rebuilds a table that others reference: foreign keys are switched off around its transaction
   * (a DROP would otherwise cascade) and checked before they are switched on again
   */
  rebuildsTables?: boolean;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'studies, instances, jobs, outputs, sends, events',
    sql: `
      CREATE TABLE studies (
        study_uid              TEXT PRIMARY KEY,
        status                 TEXT NOT NULL CHECK (status IN ('receiving','queued','processing','processed','failed')),
        -- shown to signed-in dashboard users only; never logged
        patient_name           TEXT,
        patient_id             TEXT,
        accession_number       TEXT,
        study_date             TEXT,
        study_description      TEXT,
        calling_ae             TEXT,
        calling_host           TEXT,
        first_received_at      INTEGER NOT NULL,
        last_received_at       INTEGER NOT NULL,
        processed_at           INTEGER,
        label                  TEXT,
        malignancy_probability REAL,
        error_reason           TEXT,
        error_message          TEXT,
        run_count              INTEGER NOT NULL DEFAULT 0,
        updated_at             INTEGER NOT NULL
      );
      CREATE INDEX studies_status ON studies(status, last_received_at);

      CREATE TABLE instances (
        sop_instance_uid       TEXT PRIMARY KEY,
        -- NULL when the header could not be read (the file is kept under dataDir/failed/)
        study_uid              TEXT,
        series_uid             TEXT,
        sop_class_uid          TEXT,
        transfer_syntax_uid    TEXT,
        path                   TEXT NOT NULL,
        bytes                  INTEGER NOT NULL,
        received_at            INTEGER NOT NULL,
        calling_ae             TEXT,
        calling_host           TEXT,
        status                 TEXT NOT NULL CHECK (status IN ('received','analysed','failed','skipped')),
        reason                 TEXT,
        message                TEXT,
        label                  TEXT,
        probability            REAL,
        malignancy_probability REAL,
        lesion_count           INTEGER,
        lesion_json            TEXT,
        frames                 INTEGER,
        timings_json           TEXT
      );
      CREATE INDEX instances_study ON instances(study_uid);

      CREATE TABLE jobs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        study_uid     TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('queued','running','done','failed')),
        run           INTEGER,
        attempts      INTEGER NOT NULL DEFAULT 0,
        out_dir       TEXT,
        created_at    INTEGER NOT NULL,
        started_at    INTEGER,
        finished_at   INTEGER,
        timings_json  TEXT,
        error_reason  TEXT,
        error_message TEXT
      );
      CREATE INDEX jobs_status ON jobs(status, id);
      CREATE INDEX jobs_study ON jobs(study_uid);

      CREATE TABLE outputs (
        sop_instance_uid        TEXT PRIMARY KEY,
        study_uid               TEXT NOT NULL,
        series_uid              TEXT,
        sop_class_uid           TEXT NOT NULL,
        kind                    TEXT NOT NULL CHECK (kind IN ('seg','sr','overlay')),
        path                    TEXT NOT NULL,
        source_sop_instance_uid TEXT,
        job_id                  INTEGER,
        created_at              INTEGER NOT NULL
      );
      CREATE INDEX outputs_study ON outputs(study_uid);

      -- one row per output and destination: a re-run resets the row instead of adding one
      CREATE TABLE sends (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        output_sop_uid  TEXT NOT NULL REFERENCES outputs(sop_instance_uid) ON DELETE CASCADE,
        study_uid       TEXT NOT NULL,
        destination     TEXT NOT NULL,
        -- the address at the time the row was made (return-to-sender targets are not named in config)
        ae_title        TEXT NOT NULL,
        host            TEXT NOT NULL,
        port            INTEGER NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending','sent','failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        last_status     INTEGER,
        sent_at         INTEGER,
        -- bumped whenever a re-run resets the row, so a send still in flight for the old file
        -- cannot mark the regenerated one as sent
        generation      INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        UNIQUE (output_sop_uid, destination)
      );
      CREATE INDEX sends_due ON sends(status, next_attempt_at);
      CREATE INDEX sends_study ON sends(study_uid);

      CREATE TABLE events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        INTEGER NOT NULL,
        study_uid TEXT,
        kind      TEXT NOT NULL,
        detail    TEXT
      );
      CREATE INDEX events_study ON events(study_uid, id);
      CREATE INDEX events_at ON events(at);
    `,
  },
  {
    version: 2,
    description: 'dashboard: users, sessions, audit log, settings, dismissed failures; instances.purged_at (retention)',
    sql: `
      -- dashboard accounts; password_hash is a bcrypt hash (never a password)
      CREATE TABLE users (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('admin','viewer')),
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        last_login_at INTEGER
      );

      -- express-session data (JSON); user_id lets a password change or removal end that user's sessions
      CREATE TABLE sessions (
        sid        TEXT PRIMARY KEY,
        user_id    INTEGER,
        data       TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
      CREATE INDEX sessions_expires ON sessions(expires_at);
      CREATE INDEX sessions_user ON sessions(user_id);

      -- who did what to which study, when (dashboard, API and CLI actions, sign-ins)
      CREATE TABLE audit_log (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        username   TEXT,
        role       TEXT,
        action     TEXT NOT NULL,
        outcome    TEXT NOT NULL CHECK (outcome IN ('ok','denied','failed')),
        study_uid  TEXT,
        target     TEXT,
        ip         TEXT,
        request_id TEXT,
        detail     TEXT
      );
      CREATE INDEX audit_at ON audit_log(at);
      CREATE INDEX audit_study ON audit_log(study_uid, id);

      -- small key/value state of the dashboard (e.g. the generated session secret)
      CREATE TABLE web_settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );

      -- failures an admin has discarded from the Failures page; a newer failure of the same item shows again
      CREATE TABLE failure_dismissals (
        kind     TEXT NOT NULL CHECK (kind IN ('study','instance','send')),
        key      TEXT NOT NULL,
        at       INTEGER NOT NULL,
        username TEXT,
        PRIMARY KEY (kind, key)
      );

      -- set when housekeeping deleted the received file (the row and its results stay)
      ALTER TABLE instances ADD COLUMN purged_at INTEGER;
    `,
  },
  {
    version: 3,
    description: 'studies.arrivals and jobs.arrivals_at_start: re-open detection that does not trust the wall clock',
    sql: `
      -- counts recorded instances; a job notes the count when it starts, and a higher count at its
      -- end means instances arrived meanwhile (a clock stepped backwards cannot hide them)
      ALTER TABLE studies ADD COLUMN arrivals INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN arrivals_at_start INTEGER;
    `,
  },
  {
    version: 4,
    description: "studies.calling_cn: the caller's verified certificate CN, so results are routed by the allowedCallers entry that let it in",
    sql: `
      -- '' when the caller had no verified certificate (plain TCP); NULL on studies received before
      -- this column existed (routing then matches as it did: by AE title and host)
      ALTER TABLE studies ADD COLUMN calling_cn TEXT;
    `,
  },
  {
    version: 5,
    description: "outputs.kind 'kos': the study's key object selection (a CHECK constraint is changed by rebuilding the table)",
    rebuildsTables: true,
    sql: `
      CREATE TABLE outputs_v5 (
        sop_instance_uid        TEXT PRIMARY KEY,
        study_uid               TEXT NOT NULL,
        series_uid              TEXT,
        sop_class_uid           TEXT NOT NULL,
        kind                    TEXT NOT NULL CHECK (kind IN ('seg','sr','overlay','kos')),
        path                    TEXT NOT NULL,
        -- NULL for the key object selection, which is the study's, not one instance's
        source_sop_instance_uid TEXT,
        job_id                  INTEGER,
        created_at              INTEGER NOT NULL
      );
      INSERT INTO outputs_v5 SELECT sop_instance_uid, study_uid, series_uid, sop_class_uid, kind, path, source_sop_instance_uid, job_id, created_at FROM outputs;
      DROP TABLE outputs;
      ALTER TABLE outputs_v5 RENAME TO outputs;
      CREATE INDEX outputs_study ON outputs(study_uid);
    `,
  },
  {
    version: 6,
    description: "instances.network_spread and low_agreement: the model's networks' disagreement, for the dashboard",
    sql: `
      -- the spread of the networks' P(malignant) on the reported frame, and 1 where it is above the
      -- model's cut (the SR, overlay and key object selection flag the call as uncertain); NULL for
      -- a model without that output, for an instance not analysed, and for rows from before this column
      ALTER TABLE instances ADD COLUMN network_spread REAL;
      ALTER TABLE instances ADD COLUMN low_agreement INTEGER;
    `,
  },
  {
    version: 7,
    description: 'outputs.bytes and storage_totals: the bytes the data folder holds by the rows, for housekeeping.maxStorageGB',
    sql: `
      -- the result file's size; NULL for results filed before this column existed, until
      -- housekeeping has read their size from the disk (once)
      ALTER TABLE outputs ADD COLUMN bytes INTEGER;
      CREATE INDEX outputs_unsized ON outputs(sop_instance_uid) WHERE bytes IS NULL;

      -- the bytes of the files the rows account for, kept by the triggers below in the same
      -- transaction as the rows, so reading them costs nothing however many rows there are (a SUM
      -- over 400,000 outputs rows takes 25-30 ms with an index): 'images' = received files not yet
      -- deleted by housekeeping (instances.purged_at NULL; refused files under failed/ included),
      -- 'results' = the files outputs rows point to. A migration that rebuilds instances or outputs
      -- drops their triggers with the table and must create them again.
      CREATE TABLE storage_totals (
        what  TEXT PRIMARY KEY CHECK (what IN ('images','results')),
        bytes INTEGER NOT NULL
      );
      INSERT INTO storage_totals (what, bytes) SELECT 'images', IFNULL(SUM(bytes), 0) FROM instances WHERE purged_at IS NULL;
      INSERT INTO storage_totals (what, bytes) VALUES ('results', 0);

      -- an upsert's DO UPDATE fires the UPDATE triggers, not the INSERT ones
      CREATE TRIGGER instances_storage_insert AFTER INSERT ON instances WHEN NEW.purged_at IS NULL
      BEGIN UPDATE storage_totals SET bytes = bytes + NEW.bytes WHERE what = 'images'; END;
      CREATE TRIGGER instances_storage_update AFTER UPDATE OF bytes, purged_at ON instances
      BEGIN
        UPDATE storage_totals SET bytes = bytes - (CASE WHEN OLD.purged_at IS NULL THEN OLD.bytes ELSE 0 END)
          + (CASE WHEN NEW.purged_at IS NULL THEN NEW.bytes ELSE 0 END) WHERE what = 'images';
      END;
      CREATE TRIGGER instances_storage_delete AFTER DELETE ON instances WHEN OLD.purged_at IS NULL
      BEGIN UPDATE storage_totals SET bytes = bytes - OLD.bytes WHERE what = 'images'; END;

      CREATE TRIGGER outputs_storage_insert AFTER INSERT ON outputs WHEN NEW.bytes IS NOT NULL
      BEGIN UPDATE storage_totals SET bytes = bytes + NEW.bytes WHERE what = 'results'; END;
      CREATE TRIGGER outputs_storage_update AFTER UPDATE OF bytes ON outputs
      BEGIN UPDATE storage_totals SET bytes = bytes - IFNULL(OLD.bytes, 0) + IFNULL(NEW.bytes, 0) WHERE what = 'results'; END;
      CREATE TRIGGER outputs_storage_delete AFTER DELETE ON outputs WHEN OLD.bytes IS NOT NULL
      BEGIN UPDATE storage_totals SET bytes = bytes - OLD.bytes WHERE what = 'results'; END;
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;
