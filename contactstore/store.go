// Package contactstore is the chat backend's side of Custom Authentication: it keeps the
// contacts that the custom_auth gateway verified in a database, matched by the bot's
// primary key, and the details that anonymous visitors typed as unverified leads, apart.
//
// For each request a backend reads what the gateway sent ([Reader], through the contact
// package) and saves it ([Store.Save]): a contact is created on its first visit, updated
// with the latest answer on a later one, and the result says which, so that a support
// agent's "Contact details" can show "new contact" or "welcome back, details updated".
//
// SQLite is the embedded default (a pure-Go driver, no cgo); PostgreSQL works through the
// same code. What the store guarantees, on both:
//   - one contact per bot and primary key, however many first requests race: a unique
//     constraint and INSERT … ON CONFLICT, never a read and then a write;
//   - contacts of different bots never mix: the bot is part of the key;
//   - an answer older than the stored one (by the assertion's iat) changes nothing;
//   - a lead ([Store.SaveLead]) is kept in a table of its own, read by visitor only: an
//     email typed in the "Collect Information" form never finds, changes or shows a
//     verified contact.
package contactstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite", no cgo
)

// Store keeps contacts, leads and messages. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	dialect *dialect
	now     func() time.Time
}

// Option changes a Store's defaults.
type Option func(*Store)

// WithClock sets the store's clock, which stamps created_at, updated_at and messages;
// default time.Now.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// OpenSQLite opens (and creates if needed) a SQLite database file. It uses WAL, a busy
// timeout and write transactions that take the lock when they begin, so that concurrent
// requests wait for each other instead of failing.
func OpenSQLite(ctx context.Context, path string, opts ...Option) (*Store, error) {
	dsn := "file:" + path + "?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	return open(ctx, "sqlite", dsn, sqliteDialect, opts)
}

// OpenPostgres opens a PostgreSQL database, e.g.
// "postgres://chat@127.0.0.1:5432/chat?sslmode=disable", through pgx.
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	return open(ctx, "pgx", dsn, postgresDialect, opts)
}

func open(ctx context.Context, driver, dsn string, d *dialect, opts []Option) (*Store, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("contactstore: opening %s: %w", d.name, err)
	}
	s := &Store{db: db, dialect: d, now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB is the store's database, for a backend's own tables.
func (s *Store) DB() *sql.DB { return s.db }

func (s *Store) migrate(ctx context.Context) error {
	for _, stmt := range s.dialect.schema() {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("contactstore: creating the %s schema: %w", s.dialect.name, err)
		}
	}
	return nil
}

// inTx runs fn in a transaction, committed when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("contactstore: %w", err)
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, rollback(tx))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("contactstore: %w", err)
	}
	return nil
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}
