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
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/quay/claircore"
	"github.com/quay/claircore/libvuln/driver"
	bolt "go.etcd.io/bbolt"

	"github.com/divds/divds/internal/guard"
)

// BuildOptions configure a Builder.
type BuildOptions struct {
	// Sample marks the new database as the shipped sample data. Default false.
	Sample bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// LockTimeout bounds the wait for another writer. Default 10 minutes.
	LockTimeout time.Duration
}

// batchSize is how many puts go into one transaction of the temporary
// file: it bounds the memory of dirty pages, and the temporary file is
// private, so partial commits are invisible.
const batchSize = 20000

// Builder writes a new database. Use Begin, then for each updater either
// replace its data (StartUpdater, Add…, FinishUpdater) or record that it
// failed or was unchanged; everything else is copied from the previous
// database by Commit. Abort (or a crash) leaves the previous one in place.
type Builder struct {
	opts  BuildOptions
	path  string
	tmp   string
	lock  *os.File
	old   *Store
	db    *bolt.DB
	tx    *bolt.Tx
	puts  int
	blobs map[string]uint64
	next  struct{ vuln, blob uint64 }
	index [][]byte
	enidx [][]byte
	// ratings: CVE -> tracker family -> the highest severity it gives.
	ratings map[string]map[string]uint8

	infos    map[string]*UpdaterInfo // the new database's updaters
	replaced map[string]bool
	// prevRev is the previous database's revision, kept even when its
	// content is not: revisions must only grow, or verdicts cached for an
	// old revision number would be taken for the new content's.
	prevRev uint64
	cur     *UpdaterInfo
	changed bool
	done    bool
}

// Begin starts a new database for the state directory. It waits for any
// other writer, removes a temporary file a killed writer left, and opens
// the current database (if any) to copy from.
func Begin(ctx context.Context, stateDir string, opts BuildOptions) (*Builder, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 10 * time.Minute
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	b := &Builder{
		opts: opts, path: Path(stateDir), tmp: Path(stateDir) + ".tmp",
		blobs: map[string]uint64{}, infos: map[string]*UpdaterInfo{}, replaced: map[string]bool{},
	}
	lock, err := lockFile(ctx, b.path+".lock", opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	b.lock = lock
	if err := b.open(); err != nil {
		b.Abort()
		return nil, err
	}
	return b, nil
}

func (b *Builder) open() error {
	old, err := Open(b.path)
	switch {
	case err == nil && old.meta.Sample && !b.opts.Sample:
		// Real data never keeps sample data beside it: an updater that
		// fails now would leave its 2021 sample records in a database
		// no longer labelled as sample.
		b.prevRev = old.meta.Revision
		old.Close()
	case err == nil:
		b.old = old
		b.prevRev = old.meta.Revision
		us, err := old.Updaters()
		if err != nil {
			return fmt.Errorf("read previous database: %w", err)
		}
		for _, u := range us {
			u := u
			b.infos[u.Name] = &u
		}
	case errors.Is(err, ErrNotExist):
	default:
		// A database we cannot read (another schema, corruption) is
		// replaced by what this run writes; its data is lost either way.
		b.old = nil
		b.prevRev = lastRevision(b.path)
	}
	// Left behind by a writer that was killed: never live, safe to remove.
	if err := os.Remove(b.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", b.tmp, err)
	}
	db, err := bolt.Open(b.tmp, 0o600, &bolt.Options{NoFreelistSync: true})
	if err != nil {
		return fmt.Errorf("create %s: %w", b.tmp, err)
	}
	b.db = db
	return b.beginTx()
}

func (b *Builder) beginTx() error {
	tx, err := b.db.Begin(true)
	if err != nil {
		return fmt.Errorf("write %s: %w", b.tmp, err)
	}
	b.tx = tx
	for _, name := range [][]byte{bucketMeta, bucketUpdaters, bucketVulns, bucketBlobs, bucketIndex, bucketEnrich, bucketRatings} {
		bk, err := tx.CreateBucketIfNotExists(name)
		if err != nil {
			return fmt.Errorf("write %s: %w", b.tmp, err)
		}
		// Keys go in ascending order: full pages make a smaller file.
		bk.FillPercent = 1.0
	}
	return nil
}

// put writes one key, committing the batch when it is full.
func (b *Builder) put(bucket, key, value []byte) error {
	bk := b.tx.Bucket(bucket)
	bk.FillPercent = 1.0
	if err := bk.Put(key, value); err != nil {
		return fmt.Errorf("write %s: %w", b.tmp, err)
	}
	b.puts++
	if b.puts >= batchSize {
		b.puts = 0
		if err := b.tx.Commit(); err != nil {
			return fmt.Errorf("write %s: %w", b.tmp, err)
		}
		return b.beginTx()
	}
	return nil
}

// lastRevision reads the revision of a database this version cannot
// otherwise use (another schema), or, when even that fails, seeds one
// from the clock, above any counter a database here could have reached.
func lastRevision(path string) uint64 {
	var rev uint64
	// A damaged file can fault or panic in bbolt: then the clock seeds it.
	guard.Run("read the revision of "+path, func() error {
		db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			if m := tx.Bucket(bucketMeta); m != nil {
				if v := m.Get(keyRevision); len(v) == 8 {
					rev = binary.BigEndian.Uint64(v)
				}
			}
			return nil
		})
	})
	if rev == 0 {
		rev = uint64(time.Now().Unix())
	}
	return rev
}

// Previous returns what the previous database knew of an updater.
func (b *Builder) Previous(name string) (UpdaterInfo, bool) {
	u, ok := b.infos[name]
	if !ok {
		return UpdaterInfo{}, false
	}
	return *u, true
}

// Old is the database being replaced, nil when there is none.
func (b *Builder) Old() *Store { return b.old }

// intern stores a blob once and returns its reference; 0 for empty.
func (b *Builder) intern(v []byte) (uint64, error) {
	if len(v) == 0 {
		return 0, nil
	}
	if id, ok := b.blobs[string(v)]; ok {
		return id, nil
	}
	b.next.blob++
	id := b.next.blob
	b.blobs[string(v)] = id
	return id, b.put(bucketBlobs, idKey(id), v)
}

func (b *Builder) internJSON(v any) (uint64, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return b.intern(raw)
}

// StartUpdater begins replacing the data of one updater.
func (b *Builder) StartUpdater(name string, kind Kind, fp driver.Fingerprint, at time.Time) error {
	if b.cur != nil {
		return fmt.Errorf("updater %s is still open", b.cur.Name)
	}
	if b.replaced[name] {
		return fmt.Errorf("updater %s appears twice", name)
	}
	b.replaced[name] = true
	b.changed = true
	b.cur = &UpdaterInfo{Name: name, Kind: kind, Fingerprint: fp, UpdatedAt: at.UTC(), LastAttempt: b.opts.Now().UTC()}
	return nil
}

// AddVulnerability stores one vulnerability of the open updater.
func (b *Builder) AddVulnerability(v *claircore.Vulnerability) error {
	if b.cur == nil || b.cur.Kind != KindVulnerability {
		return errors.New("no vulnerability updater is open")
	}
	if v == nil {
		return errors.New("nil vulnerability")
	}
	rec := &record{
		Name: v.Name, Issued: unixNano(v.Issued), Severity: v.Severity, NormSeverity: uint8(v.NormalizedSeverity),
		FixedIn: v.FixedInVersion, Range: v.Range, ArchOp: uint8(v.ArchOperation), Invert: v.Invert,
		SelfName: v.Self.Name, Aliases: v.Aliases,
	}
	rec.SelfSpace = spaceValue(v.Self.Space)
	var err error
	if rec.Desc, err = b.intern([]byte(v.Description)); err != nil {
		return err
	}
	if rec.Links, err = b.intern([]byte(v.Links)); err != nil {
		return err
	}
	if rec.Updater, err = b.intern([]byte(b.cur.Name)); err != nil {
		return err
	}
	if v.Package != nil {
		rec.PackageName, rec.PackageKind, rec.PackageVersion = v.Package.Name, kindString(v.Package.Kind), v.Package.Version
		if rec.Package, err = b.internJSON(v.Package); err != nil {
			return fmt.Errorf("%s: package: %w", v.Name, err)
		}
	}
	if v.Dist != nil {
		if rec.Dist, err = b.internJSON(v.Dist); err != nil {
			return fmt.Errorf("%s: distribution: %w", v.Name, err)
		}
	}
	if v.Repo != nil {
		if rec.Repo, err = b.internJSON(v.Repo); err != nil {
			return fmt.Errorf("%s: repository: %w", v.Name, err)
		}
	}
	b.cur.Records++
	return b.putRecord(rec, b.cur.Name)
}

func (b *Builder) putRecord(rec *record, updater string) error {
	if b.ratings == nil {
		b.ratings = map[string]map[string]uint8{}
	}
	b.noteRating(rec, updater)
	b.next.vuln++
	id := b.next.vuln
	if err := b.put(bucketVulns, idKey(id), rec.encode(nil)); err != nil {
		return err
	}
	b.index = append(b.index, append(indexPrefix(rec.PackageKind, rec.PackageName), idKey(id)...))
	return nil
}

// AddEnrichment stores one enrichment record of the open updater.
func (b *Builder) AddEnrichment(r driver.EnrichmentRecord) error {
	if b.cur == nil || b.cur.Kind != KindEnrichment {
		return errors.New("no enrichment updater is open")
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("enrichment: %w", err)
	}
	return b.addEnrichmentRaw(r.Tags, raw)
}

func (b *Builder) addEnrichmentRaw(tags []string, raw []byte) error {
	id, err := b.intern(raw)
	if err != nil {
		return err
	}
	for _, t := range tags {
		b.enidx = append(b.enidx, append(indexPrefix(b.cur.Name, t), idKey(id)...))
	}
	b.cur.Records++
	return nil
}

// FinishUpdater closes the open updater.
func (b *Builder) FinishUpdater() error {
	if b.cur == nil {
		return errors.New("no updater is open")
	}
	b.infos[b.cur.Name] = b.cur
	b.cur = nil
	return nil
}

// MarkFailed records a failed update: the previous data stays.
func (b *Builder) MarkFailed(name string, kind Kind, cause error) {
	u := b.info(name, kind)
	u.LastError = cause.Error()
	u.LastAttempt = b.opts.Now().UTC()
}

// MarkUnchanged records that the source had nothing new: the data stays
// and counts as fresh from now.
func (b *Builder) MarkUnchanged(name string, kind Kind) {
	u := b.info(name, kind)
	u.LastError = ""
	u.LastAttempt = b.opts.Now().UTC()
	u.UpdatedAt = u.LastAttempt
}

func (b *Builder) info(name string, kind Kind) *UpdaterInfo {
	u, ok := b.infos[name]
	if !ok {
		u = &UpdaterInfo{Name: name, Kind: kind}
		b.infos[name] = u
	}
	return u
}

// copyForward copies every updater that was not replaced from the
// previous database, re-interning blobs by content.
func (b *Builder) copyForward(ctx context.Context) error {
	if b.old == nil {
		return nil
	}
	return b.old.view(func(tx *bolt.Tx) error {
		r := reader{s: b.old, tx: tx, blobs: tx.Bucket(bucketBlobs)}
		names := map[uint64]string{}
		remap := func(id uint64) (uint64, error) {
			raw, err := r.blob(id)
			if err != nil {
				return 0, err
			}
			return b.intern(raw)
		}
		c := tx.Bucket(bucketVulns).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("previous database: vulnerability %x: %w", k, err)
			}
			name, ok := names[rec.Updater]
			if !ok {
				if name, err = r.str(rec.Updater); err != nil {
					return err
				}
				names[rec.Updater] = name
			}
			if b.replaced[name] {
				continue
			}
			for _, ref := range []*uint64{&rec.Desc, &rec.Links, &rec.Package, &rec.Dist, &rec.Repo, &rec.Updater} {
				if *ref, err = remap(*ref); err != nil {
					return err
				}
			}
			if err := b.putRecord(rec, name); err != nil {
				return err
			}
		}
		ec := tx.Bucket(bucketEnrich).Cursor()
		for k, _ := ec.First(); k != nil; k, _ = ec.Next() {
			name, tag, old, err := splitEnrichKey(k)
			if err != nil {
				return fmt.Errorf("previous database: %w", err)
			}
			if b.replaced[name] {
				continue
			}
			id, err := remap(old)
			if err != nil {
				return err
			}
			b.enidx = append(b.enidx, append(indexPrefix(name, tag), idKey(id)...))
		}
		return nil
	})
}

// Commit finishes the new database and swaps it in. It returns the new
// metadata. The revision increases when any updater's data was replaced.
func (b *Builder) Commit(ctx context.Context) (Meta, error) {
	if b.done {
		return Meta{}, errors.New("builder already finished")
	}
	defer b.Abort()
	if b.cur != nil {
		return Meta{}, fmt.Errorf("updater %s was not finished", b.cur.Name)
	}
	// Kept updaters keep their infos, counts included.
	if err := b.copyForward(ctx); err != nil {
		return Meta{}, err
	}
	slices.SortFunc(b.index, bytes.Compare)
	for _, k := range b.index {
		if err := b.put(bucketIndex, k, nil); err != nil {
			return Meta{}, err
		}
	}
	if err := b.writeRatings(); err != nil {
		return Meta{}, err
	}
	slices.SortFunc(b.enidx, bytes.Compare)
	b.enidx = slices.CompactFunc(b.enidx, func(x, y []byte) bool { return bytes.Equal(x, y) })
	for _, k := range b.enidx {
		if err := b.put(bucketEnrich, k, nil); err != nil {
			return Meta{}, err
		}
	}
	names := make([]string, 0, len(b.infos))
	for n := range b.infos {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		raw, err := json.Marshal(b.infos[n])
		if err != nil {
			return Meta{}, err
		}
		if err := b.put(bucketUpdaters, []byte(n), raw); err != nil {
			return Meta{}, err
		}
	}
	meta := Meta{Schema: SchemaVersion, UpdatedAt: b.opts.Now().UTC(), Sample: b.opts.Sample, Revision: b.prevRev}
	if b.old != nil {
		meta.Sample = meta.Sample || (b.old.meta.Sample && !b.changed)
	}
	if b.changed || b.old == nil {
		meta.Revision++
	}
	rev := idKey(meta.Revision)
	sample := "0"
	if meta.Sample {
		sample = "1"
	}
	for k, v := range map[string][]byte{
		string(keySchema): []byte(strconv.Itoa(SchemaVersion)), string(keyRevision): rev,
		string(keyUpdatedAt): []byte(meta.UpdatedAt.Format(time.RFC3339Nano)), string(keySample): []byte(sample),
	} {
		if err := b.tx.Bucket(bucketMeta).Put([]byte(k), v); err != nil {
			return Meta{}, fmt.Errorf("write %s: %w", b.tmp, err)
		}
	}
	if err := b.tx.Commit(); err != nil {
		return Meta{}, fmt.Errorf("write %s: %w", b.tmp, err)
	}
	b.tx = nil
	if err := b.db.Sync(); err != nil {
		return Meta{}, fmt.Errorf("sync %s: %w", b.tmp, err)
	}
	if err := b.db.Close(); err != nil {
		return Meta{}, fmt.Errorf("close %s: %w", b.tmp, err)
	}
	b.db = nil
	// The swap: rename is atomic, and a reader keeps the file it opened.
	if err := os.Rename(b.tmp, b.path); err != nil {
		return Meta{}, fmt.Errorf("install new database: %w", err)
	}
	if err := syncDir(filepath.Dir(b.path)); err != nil {
		return Meta{}, err
	}
	b.done = true
	return meta, nil
}

// Abort discards the new database and releases the lock. It is safe to
// call more than once, and after Commit.
func (b *Builder) Abort() {
	if b.tx != nil {
		b.tx.Rollback()
		b.tx = nil
	}
	if b.db != nil {
		b.db.Close()
		b.db = nil
		os.Remove(b.tmp)
	}
	if b.old != nil {
		b.old.Close()
		b.old = nil
	}
	if b.lock != nil {
		b.lock.Close() // releases the flock
		b.lock = nil
	}
	b.done = true
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// lockFile takes an exclusive flock, polling until timeout or ctx ends.
func lockFile(ctx context.Context, path string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another database update holds %s (waited %s)", path, timeout)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
