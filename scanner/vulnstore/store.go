package vulnstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/divds/divds/internal/guard"
	"github.com/divds/divds/internal/safejson"
	"github.com/quay/claircore"
	"github.com/quay/claircore/datastore"
	"github.com/quay/claircore/libvuln/driver"
	"github.com/quay/claircore/toolkit/types"
	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout of the database file. Another version is
// refused with the command that rebuilds it.
const SchemaVersion = 1

// FileName is the database's name in the state directory.
const FileName = "vuln.db"

var (
	bucketMeta     = []byte("meta")
	bucketUpdaters = []byte("updaters")
	bucketVulns    = []byte("vulns")
	bucketBlobs    = []byte("blobs")
	bucketIndex    = []byte("index")
	bucketEnrich   = []byte("enrich")

	keySchema    = []byte("schema")
	keyRevision  = []byte("revision")
	keyUpdatedAt = []byte("updated_at")
	keySample    = []byte("sample")
)

// ErrNotExist is returned by Open when there is no database yet.
var ErrNotExist = errors.New("no vulnerability database")

// ErrCorrupt is returned by Open for a file that is not a whole DIVDS
// database: truncated, damaged, or something else. The gates treat it
// like a missing database.
var ErrCorrupt = errors.New("vulnerability database is corrupt")

// Kind says what an updater stores.
type Kind string

// The two kinds of update operation.
const (
	KindVulnerability Kind = "vulnerability"
	KindEnrichment    Kind = "enrichment"
)

// UpdaterInfo is what the store knows of one updater.
type UpdaterInfo struct {
	Name        string             `json:"name"`
	Kind        Kind               `json:"kind"`
	Fingerprint driver.Fingerprint `json:"fingerprint"`
	// UpdatedAt is when the updater's data last changed or was confirmed
	// unchanged; the data's age is measured from it.
	UpdatedAt time.Time `json:"updated_at"`
	Records   int       `json:"records"`
	// LastError is the last failure, kept with the previous data; cleared
	// by the next success.
	LastError   string    `json:"last_error,omitempty"`
	LastAttempt time.Time `json:"last_attempt"`
}

// Meta describes the whole database.
type Meta struct {
	Schema    int       `json:"schema_version"`
	Revision  uint64    `json:"revision"`
	UpdatedAt time.Time `json:"updated_at"`
	// Sample marks the small offline sample shipped for demos.
	Sample bool `json:"sample"`
}

// Store is a read-only view of one database file. It is safe for
// concurrent use. It never changes: a newer database is a new Store.
type Store struct {
	db   *bolt.DB
	path string
	meta Meta

	// Decoded blobs, shared by every lookup: the file never changes, and
	// the same package, distribution and description recur across
	// vulnerabilities. Matchers treat vulnerabilities as read-only.
	blobMu sync.RWMutex
	dists  map[uint64]*claircore.Distribution
	repos  map[uint64]*claircore.Repository
	pkgs   map[uint64]*claircore.Package
	strs   map[uint64]string
}

// maxCached bounds each blob cache; a full cache is dropped and refilled,
// which keeps memory bounded on any database.
const maxCached = 1 << 16

var _ datastore.Vulnerability = (*Store)(nil)
var _ datastore.Enrichment = (*Store)(nil)

// Path returns the database path in a state directory.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// Open opens the database at path read-only. It maps the file and reads
// only the metadata, so it is fast whatever the size.
func Open(path string) (*Store, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: run `divds-authz db update` (or `db import`)", ErrNotExist, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open vulnerability database %s: %w", path, err)
	}
	corrupt := func(cause error) error {
		return fmt.Errorf("%w: %s: %v. Recover: remove it and run `divds-authz db update` (or `db import` of a bundle)", ErrCorrupt, path, cause)
	}
	var s *Store
	// bbolt maps the file: a truncated or damaged one faults or fails
	// an assertion on the first read of a missing page. Either is this
	// file's error, never the process's end.
	err = guard.Run("open "+path, func() error {
		db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
		if err != nil {
			if errors.Is(err, bolt.ErrTimeout) {
				return fmt.Errorf("open vulnerability database %s: %w", path, err)
			}
			return corrupt(err)
		}
		s = &Store{db: db, path: path, dists: map[uint64]*claircore.Distribution{}, repos: map[uint64]*claircore.Repository{},
			pkgs: map[uint64]*claircore.Package{}, strs: map[uint64]string{}}
		err = db.View(func(tx *bolt.Tx) error {
			// The meta page names the last page in use: a file shorter
			// than that was cut off (a copy that ended early, a full
			// disk), and reading its pages would fault.
			if want := tx.Size(); st.Size() < want {
				return corrupt(fmt.Errorf("truncated: %d bytes of %d", st.Size(), want))
			}
			m, err := readMeta(tx)
			s.meta = m
			return err
		})
		if err != nil {
			db.Close()
			if errors.Is(err, ErrCorrupt) {
				return err
			}
			return fmt.Errorf("open vulnerability database %s: %w", path, err)
		}
		return nil
	})
	var pe *guard.PanicError
	if errors.As(err, &pe) {
		return nil, corrupt(fmt.Errorf("%v", pe.Value))
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func readMeta(tx *bolt.Tx) (Meta, error) {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return Meta{}, errors.New("not a DIVDS vulnerability database (no meta bucket)")
	}
	var m Meta
	schema, _ := strconv.Atoi(string(b.Get(keySchema)))
	m.Schema = schema
	if schema != SchemaVersion {
		return m, fmt.Errorf("database schema version %d is not the %d this divds-authz uses: rebuild it with `divds-authz db update` (or `db import`)", schema, SchemaVersion)
	}
	for _, name := range [][]byte{bucketUpdaters, bucketVulns, bucketBlobs, bucketIndex, bucketEnrich} {
		if tx.Bucket(name) == nil {
			return m, fmt.Errorf("database is missing its %s bucket: rebuild it with `divds-authz db update`", name)
		}
	}
	if v := b.Get(keyRevision); len(v) == 8 {
		m.Revision = binary.BigEndian.Uint64(v)
	}
	if t, err := time.Parse(time.RFC3339Nano, string(b.Get(keyUpdatedAt))); err == nil {
		m.UpdatedAt = t
	}
	m.Sample = string(b.Get(keySample)) == "1"
	return m, nil
}

// Close releases the file.
func (s *Store) Close() error { return s.db.Close() }

// view runs a read transaction. A page damaged after the file was opened
// (Open checked the file's length and metadata, not every page) faults or
// fails one of bbolt's assertions: that is an ErrCorrupt for this read,
// not a crash of the plugin that every docker command waits for.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	var inner error
	err := guard.Run("read "+s.path, func() error {
		inner = s.db.View(fn)
		return nil
	})
	var pe *guard.PanicError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s: %v. Recover: remove it and run `divds-authz db update` (or `db import` of a bundle)", ErrCorrupt, s.path, pe.Value)
	}
	return inner
}

// Meta returns the database's metadata.
func (s *Store) Meta() Meta { return s.meta }

// Revision changes with every change of content; caches key on it.
func (s *Store) Revision() uint64 { return s.meta.Revision }

// Path is the file this Store reads.
func (s *Store) Path() string { return s.path }

// Size is the file's size in bytes.
func (s *Store) Size() int64 {
	var n int64
	s.view(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// Updaters lists what the store knows of every updater, by name.
func (s *Store) Updaters() ([]UpdaterInfo, error) {
	var out []UpdaterInfo
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUpdaters).ForEach(func(k, v []byte) error {
			var u UpdaterInfo
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("updater %s: %w", k, err)
			}
			out = append(out, u)
			return nil
		})
	})
	return out, err
}

// OldestUpdate is the oldest UpdatedAt of the vulnerability updaters: the
// age that counts against db.max_age. Zero when there is none.
func (s *Store) OldestUpdate() (time.Time, error) {
	us, err := s.Updaters()
	if err != nil {
		return time.Time{}, err
	}
	var oldest time.Time
	for _, u := range us {
		if u.Kind == KindVulnerability && u.Records > 0 && (oldest.IsZero() || u.UpdatedAt.Before(oldest)) {
			oldest = u.UpdatedAt
		}
	}
	return oldest, nil
}

// kindString maps a package kind to the string claircore's stores use.
func kindString(k types.PackageKind) string {
	if k == types.UnknownPackage {
		return ""
	}
	return k.String()
}

func indexPrefix(kind, name string) []byte {
	b := make([]byte, 0, len(kind)+len(name)+10)
	b = append(b, kind...)
	b = append(b, 0)
	b = append(b, name...)
	return append(b, 0)
}

// Get implements datastore.Vulnerability: for each record, the
// vulnerabilities of its package (or its source package) that satisfy every
// constraint in opts. The result maps Package.ID to vulnerabilities.
func (s *Store) Get(ctx context.Context, records []*claircore.IndexRecord, opts datastore.GetOpts) (map[string][]*claircore.Vulnerability, error) {
	out := make(map[string][]*claircore.Vulnerability, len(records))
	err := s.view(func(tx *bolt.Tx) error {
		r := reader{s: s, tx: tx, vulns: tx.Bucket(bucketVulns), blobs: tx.Bucket(bucketBlobs), cache: map[uint64]*claircore.Vulnerability{}}
		idx := tx.Bucket(bucketIndex).Cursor()
		for _, rec := range records {
			if err := ctx.Err(); err != nil {
				return err
			}
			if rec == nil || rec.Package == nil || rec.Package.Name == "" {
				continue // claircore's store skips records it cannot query
			}
			seen := map[uint64]bool{}
			list := out[rec.Package.ID]
			lookups := [][2]string{{kindString(rec.Package.Kind), rec.Package.Name}}
			if src := rec.Package.Source; src != nil && src.Name != "" {
				lookups = append(lookups, [2]string{kindString(src.Kind), src.Name})
			}
			for _, l := range lookups {
				err := eachID(idx, indexPrefix(l[0], l[1]), seen, func(id uint64) error {
					v, err := r.candidate(id, rec, &opts)
					if v != nil {
						list = append(list, v)
					}
					return err
				})
				if err != nil {
					return err
				}
			}
			out[rec.Package.ID] = list
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vulnerability lookup: %w", err)
	}
	return out, nil
}

// satisfies applies the matcher's constraints the way claircore's
// PostgreSQL query does: each is an equality between a field of the
// record and the stored vulnerability (empty when absent).
func satisfies(rec *claircore.IndexRecord, v *claircore.Vulnerability, opts *datastore.GetOpts) (bool, error) {
	rd, vd := rec.Distribution, v.Dist
	if rd == nil {
		rd = &claircore.Distribution{}
	}
	if vd == nil {
		vd = &claircore.Distribution{}
	}
	rr, vr := rec.Repository, v.Repo
	if rr == nil {
		rr = &claircore.Repository{}
	}
	if vr == nil {
		vr = &claircore.Repository{}
	}
	for _, m := range opts.Matchers {
		var ok bool
		switch m {
		case driver.PackageModule:
			ok = rec.Package.Module == v.Package.Module
		case driver.DistributionDID:
			ok = rd.DID == vd.DID
		case driver.DistributionName:
			ok = rd.Name == vd.Name
		case driver.DistributionVersionID:
			ok = rd.VersionID == vd.VersionID
		case driver.DistributionVersion:
			ok = rd.Version == vd.Version
		case driver.DistributionVersionCodeName:
			ok = rd.VersionCodeName == vd.VersionCodeName
		case driver.DistributionPrettyName:
			ok = rd.PrettyName == vd.PrettyName
		case driver.DistributionCPE:
			ok = rd.CPE.String() == vd.CPE.String()
		case driver.DistributionArch:
			ok = rd.Arch == vd.Arch
		case driver.RepositoryName:
			ok = rr.Name == vr.Name
		case driver.RepositoryKey:
			ok = rr.Key == vr.Key
		case driver.HasFixedInVersion:
			ok = v.FixedInVersion != ""
		case driver.PackageName, driver.PackageSourceName:
			ok = true // the index lookup already did this
		default:
			return false, fmt.Errorf("unknown match constraint %v", m)
		}
		if !ok {
			return false, nil
		}
	}
	if opts.VersionFiltering {
		nv := &rec.Package.NormalizedVersion
		if v.Range == nil || v.Range.Lower.Kind != nv.Kind || !v.Range.Contains(nv) {
			return false, nil
		}
	}
	return true, nil
}

// eachID calls fn with each record ID indexed under prefix, skipping
// those already seen.
func eachID(c *bolt.Cursor, prefix []byte, seen map[uint64]bool, fn func(id uint64) error) error {
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+8 {
			continue
		}
		id := binary.BigEndian.Uint64(k[len(prefix):])
		if seen[id] {
			continue
		}
		seen[id] = true
		if err := fn(id); err != nil {
			return err
		}
	}
	return nil
}

// reader decodes vulnerabilities within one read transaction.
type reader struct {
	s     *Store
	tx    *bolt.Tx
	vulns *bolt.Bucket
	blobs *bolt.Bucket
	cache map[uint64]*claircore.Vulnerability
}

func idKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

func (r *reader) blob(id uint64) ([]byte, error) {
	if id == 0 {
		return nil, nil
	}
	b := r.blobs.Get(idKey(id))
	if b == nil {
		return nil, fmt.Errorf("blob %d is missing", id)
	}
	return b, nil
}

func (r *reader) str(id uint64) (string, error) {
	if id == 0 {
		return "", nil
	}
	r.s.blobMu.RLock()
	v, ok := r.s.strs[id]
	r.s.blobMu.RUnlock()
	if ok {
		return v, nil
	}
	b, err := r.blob(id)
	if err != nil {
		return "", err
	}
	v = string(b)
	r.s.blobMu.Lock()
	if len(r.s.strs) >= maxCached {
		clear(r.s.strs)
	}
	r.s.strs[id] = v
	r.s.blobMu.Unlock()
	return v, nil
}

// candidate returns vulnerability id when it satisfies opts for rec, nil
// when it does not. Constraints are checked on the cheap parts first.
func (r *reader) candidate(id uint64, rec *claircore.IndexRecord, opts *datastore.GetOpts) (*claircore.Vulnerability, error) {
	if v, ok := r.cache[id]; ok {
		ok, err := satisfies(rec, v, opts)
		if !ok || err != nil {
			return nil, err
		}
		return v, nil
	}
	raw := r.vulns.Get(idKey(id))
	if raw == nil {
		return nil, fmt.Errorf("vulnerability %d is indexed but missing", id)
	}
	stored, err := decodeRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("vulnerability %d: %w", id, err)
	}
	// A first pass with what needs no string copies: package, dist, repo.
	shell := &claircore.Vulnerability{FixedInVersion: stored.FixedIn, Range: stored.Range}
	if err := r.fillShared(shell, stored); err != nil {
		return nil, err
	}
	if ok, err := satisfies(rec, shell, opts); !ok || err != nil {
		return nil, err
	}
	v, err := r.expand(id, stored)
	if err != nil {
		return nil, fmt.Errorf("vulnerability %d: %w", id, err)
	}
	r.cache[id] = v
	return v, nil
}

func (r *reader) expand(id uint64, rec *record) (*claircore.Vulnerability, error) {
	v := &claircore.Vulnerability{
		ID:                 strconv.FormatUint(id, 10),
		Name:               rec.Name,
		Issued:             fromUnixNano(rec.Issued),
		Severity:           rec.Severity,
		NormalizedSeverity: claircore.Severity(rec.NormSeverity),
		FixedInVersion:     rec.FixedIn,
		Range:              rec.Range,
		ArchOperation:      claircore.ArchOp(rec.ArchOp),
		Invert:             rec.Invert,
		Aliases:            rec.Aliases,
	}
	var err error
	if v.Description, err = r.str(rec.Desc); err != nil {
		return nil, err
	}
	if v.Links, err = r.str(rec.Links); err != nil {
		return nil, err
	}
	if v.Updater, err = r.str(rec.Updater); err != nil {
		return nil, err
	}
	if err := r.fillShared(v, rec); err != nil {
		return nil, err
	}
	if rec.SelfName != "" || rec.SelfSpace != "" {
		v.Self = claircore.Alias{Name: rec.SelfName}
		v.Self.Space = internSpace(rec.SelfSpace)
	}
	return v, nil
}

// fillShared sets the interned package (never nil, as claircore's stores
// return it), distribution and repository of v.
func (r *reader) fillShared(v *claircore.Vulnerability, rec *record) error {
	var err error
	if v.Package, err = r.pkg(rec.Package); err != nil {
		return err
	}
	if v.Package == nil {
		v.Package = &claircore.Package{}
	}
	if v.Dist, err = r.dist(rec.Dist); err != nil {
		return err
	}
	v.Repo, err = r.repo(rec.Repo)
	return err
}

// dist and repo decode each distinct blob once per Store: there are few,
// and every Ubuntu vulnerability names the same one.
func (r *reader) dist(id uint64) (*claircore.Distribution, error) {
	return cachedBlob(r, id, r.s.dists)
}

func (r *reader) repo(id uint64) (*claircore.Repository, error) {
	return cachedBlob(r, id, r.s.repos)
}

func (r *reader) pkg(id uint64) (*claircore.Package, error) {
	return cachedBlob(r, id, r.s.pkgs)
}

func cachedBlob[T any](r *reader, id uint64, cache map[uint64]*T) (*T, error) {
	if id == 0 {
		return nil, nil
	}
	r.s.blobMu.RLock()
	v, ok := cache[id]
	r.s.blobMu.RUnlock()
	if ok {
		return v, nil
	}
	b, err := r.blob(id)
	if err != nil {
		return nil, err
	}
	v = new(T)
	if err := safejson.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("blob %d: %w", id, err)
	}
	r.s.blobMu.Lock()
	if len(cache) >= maxCached {
		clear(cache)
	}
	cache[id] = v
	r.s.blobMu.Unlock()
	return v, nil
}

// GetEnrichment implements datastore.Enrichment: the records of updater
// kind carrying any of tags.
func (s *Store) GetEnrichment(ctx context.Context, kind string, tags []string) ([]driver.EnrichmentRecord, error) {
	var out []driver.EnrichmentRecord
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEnrich).Cursor()
		r := reader{s: s, tx: tx, blobs: tx.Bucket(bucketBlobs)}
		seen := map[uint64]bool{}
		for _, tag := range tags {
			err := eachID(c, indexPrefix(kind, tag), seen, func(id uint64) error {
				b, err := r.blob(id)
				if err != nil {
					return err
				}
				var rec driver.EnrichmentRecord
				if err := json.Unmarshal(b, &rec); err != nil {
					return fmt.Errorf("enrichment %d: %w", id, err)
				}
				out = append(out, rec)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// EachVulnerability calls fn for every stored vulnerability, grouped by
// updater (a Builder writes each updater's records contiguously).
func (s *Store) EachVulnerability(ctx context.Context, fn func(updater string, v *claircore.Vulnerability) error) error {
	return s.view(func(tx *bolt.Tx) error {
		r := reader{s: s, tx: tx, vulns: tx.Bucket(bucketVulns), blobs: tx.Bucket(bucketBlobs)}
		c := r.vulns.Cursor()
		for k, raw := c.First(); k != nil; k, raw = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(k) != 8 {
				return fmt.Errorf("bad vulnerability key %x", k)
			}
			rec, err := decodeRecord(raw)
			if err != nil {
				return fmt.Errorf("vulnerability %x: %w", k, err)
			}
			v, err := r.expand(binary.BigEndian.Uint64(k), rec)
			if err != nil {
				return err
			}
			if err := fn(v.Updater, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// EachEnrichment calls fn for every stored enrichment record, by updater.
func (s *Store) EachEnrichment(ctx context.Context, fn func(updater string, rec driver.EnrichmentRecord) error) error {
	return s.view(func(tx *bolt.Tx) error {
		r := reader{s: s, tx: tx, blobs: tx.Bucket(bucketBlobs)}
		seen := map[string]bool{}
		c := tx.Bucket(bucketEnrich).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			updater, _, id, err := splitEnrichKey(k)
			if err != nil {
				return err
			}
			key := fmt.Sprintf("%s\x00%d", updater, id)
			if seen[key] {
				continue // a record with several tags is indexed once per tag
			}
			seen[key] = true
			b, err := r.blob(id)
			if err != nil {
				return err
			}
			var rec driver.EnrichmentRecord
			if err := json.Unmarshal(b, &rec); err != nil {
				return fmt.Errorf("enrichment: %w", err)
			}
			if err := fn(updater, rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// splitEnrichKey reads an enrichment index key: updater, tag, blob id.
func splitEnrichKey(k []byte) (updater, tag string, id uint64, err error) {
	parts := bytes.SplitN(k, []byte{0}, 3)
	if len(parts) != 3 || len(parts[2]) != 8 {
		return "", "", 0, fmt.Errorf("bad enrichment key %q", k)
	}
	return string(parts[0]), string(parts[1]), binary.BigEndian.Uint64(parts[2]), nil
}
