// Package cache keeps what scanning learned about layers and images in
// the state directory, so that an image sharing base layers with one
// already scanned reads only its new layers, and a database update
// re-matches cached indexes without reading any layer again.
package cache

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/quay/claircore"
	"github.com/sirupsen/logrus"
	bolt "go.etcd.io/bbolt"

	"github.com/divds/divds/internal/safejson"
	"github.com/divds/divds/scanner/index"
	"github.com/divds/divds/scanner/layerfs"
)

// FileName is the cache's name in the state directory.
const FileName = "scan-cache.db"

var (
	bucketLayers  = []byte("layers")
	bucketIndexes = []byte("indexes")
	// bucketOrder maps an insertion sequence to "bucket\x00key", oldest
	// first; bucketMeta keeps the bytes held.
	bucketOrder = []byte("order")
	bucketMeta  = []byte("meta")
	keyBytes    = []byte("bytes")
)

// DefaultMaxBytes is the cache's default budget. Past it, the oldest
// entries go first.
const DefaultMaxBytes = 1 << 30

// Cache is safe for concurrent use. Failures to write are logged, never
// returned: a cache must not fail a scan.
type Cache struct {
	db       *bolt.DB
	log      logrus.FieldLogger
	maxBytes int64
}

// Open opens (creating) the cache in stateDir. Only one process may hold
// it; another gets an error after timeout and should scan uncached.
func Open(stateDir string, timeout time.Duration, log logrus.FieldLogger) (*Cache, error) {
	p := filepath.Join(stateDir, FileName)
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: timeout, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open scan cache %s: %w", p, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLayers, bucketIndexes, bucketOrder, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open scan cache %s: %w", p, err)
	}
	if log == nil {
		log = logrus.New()
	}
	return &Cache{db: db, log: log, maxBytes: DefaultMaxBytes}, nil
}

// SetMaxBytes changes the budget (for tests and small hosts).
func (c *Cache) SetMaxBytes(n int64) { c.maxBytes = n }

// Close closes the cache.
func (c *Cache) Close() error { return c.db.Close() }

func layerKey(diffID string) []byte { return []byte("layerfs@" + layerfs.Version + "|" + diffID) }

func (c *Cache) get(bucket, key []byte, v any) bool {
	found := false
	c.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucket).Get(key)
		if raw == nil {
			return nil
		}
		if err := safejson.Unmarshal(raw, v); err != nil {
			c.log.WithError(err).Warnf("scan cache: unreadable entry %q ignored", key)
			return nil
		}
		found = true
		return nil
	})
	return found
}

func (c *Cache) put(bucket, key []byte, v any) {
	raw, err := json.Marshal(v)
	if err == nil {
		err = c.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			total := readInt(tx.Bucket(bucketMeta).Get(keyBytes))
			if old := b.Get(key); old != nil {
				total -= int64(len(old))
			}
			if err := b.Put(key, raw); err != nil {
				return err
			}
			total += int64(len(raw))
			order := tx.Bucket(bucketOrder)
			seq, _ := order.NextSequence()
			if err := order.Put(u64(seq), append(append(append([]byte(nil), bucket...), 0), key...)); err != nil {
				return err
			}
			total = c.evict(tx, total)
			return tx.Bucket(bucketMeta).Put(keyBytes, u64(uint64(total)))
		})
	}
	if err != nil {
		c.log.WithError(err).Warn("scan cache: write failed")
	}
}

// evict drops the oldest entries until the cache holds at most 90% of
// its budget, and returns the bytes left.
func (c *Cache) evict(tx *bolt.Tx, total int64) int64 {
	if total <= c.maxBytes {
		return total
	}
	target := c.maxBytes / 10 * 9
	oc := tx.Bucket(bucketOrder).Cursor()
	var done [][]byte
	for k, v := oc.First(); k != nil && total > target; k, v = oc.Next() {
		done = append(done, append([]byte(nil), k...))
		name, key, ok := bytes.Cut(v, []byte{0})
		if !ok {
			continue
		}
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		if val := b.Get(key); val != nil {
			total -= int64(len(val))
			b.Delete(key)
		}
	}
	for _, k := range done {
		tx.Bucket(bucketOrder).Delete(k)
	}
	return total
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func readInt(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// Layer returns a layer's cached FileSet, nil if absent.
func (c *Cache) Layer(diffID string) *layerfs.FileSet {
	var fs layerfs.FileSet
	if !c.get(bucketLayers, layerKey(diffID), &fs) || fs.Entries == nil {
		return nil
	}
	return &fs
}

// PutLayer caches a layer's FileSet.
func (c *Cache) PutLayer(diffID string, fs *layerfs.FileSet) {
	if fs != nil {
		c.put(bucketLayers, layerKey(diffID), fs)
	}
}

// pkg carries the fields of a claircore.Package that its JSON form drops.
type pkg struct {
	P              *claircore.Package `json:"p"`
	PackageDB      string             `json:"db,omitempty"`
	Filepath       string             `json:"fp,omitempty"`
	RepositoryHint string             `json:"rh,omitempty"`
	SourceDB       string             `json:"sdb,omitempty"`
	Layer          int                `json:"l"`
}

type result struct {
	Distribution *claircore.Distribution `json:"dist,omitempty"`
	Packages     []pkg                   `json:"pkgs"`
	Warnings     []string                `json:"warnings,omitempty"`
}

// Index returns a cached index, nil if absent.
func (c *Cache) Index(key string) *index.Result {
	var r result
	if !c.get(bucketIndexes, []byte(key), &r) {
		return nil
	}
	out := &index.Result{Distribution: r.Distribution, Warnings: r.Warnings}
	for _, p := range r.Packages {
		if p.P == nil {
			return nil
		}
		p.P.PackageDB, p.P.Filepath, p.P.RepositoryHint = p.PackageDB, p.Filepath, p.RepositoryHint
		if p.P.Source != nil {
			p.P.Source.PackageDB = p.SourceDB
		}
		out.Packages = append(out.Packages, index.Package{Package: p.P, Layer: p.Layer})
	}
	return out
}

// PutIndex caches an index.
func (c *Cache) PutIndex(key string, res *index.Result) {
	r := result{Distribution: res.Distribution, Warnings: res.Warnings, Packages: []pkg{}}
	for _, p := range res.Packages {
		cp := pkg{P: p.Package, PackageDB: p.PackageDB, Filepath: p.Filepath, RepositoryHint: p.RepositoryHint, Layer: p.Layer}
		if p.Source != nil {
			cp.SourceDB = p.Source.PackageDB
		}
		r.Packages = append(r.Packages, cp)
	}
	c.put(bucketIndexes, []byte(key), r)
}
