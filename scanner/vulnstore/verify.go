package vulnstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Verify checks the database's consistency: every record decodes and
// its blobs exist, each updater's record count matches its records, and
// every index entry points at a record of that package. It reads the
// whole file; `db status --verify` and the crash tests use it.
func (s *Store) Verify(ctx context.Context) error {
	infos, err := s.Updaters()
	if err != nil {
		return err
	}
	want := map[string]int{}
	for _, u := range infos {
		if u.Kind == KindVulnerability {
			want[u.Name] = u.Records
		}
	}
	got := map[string]int{}
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketVulns).Cursor()
		rr := reader{s: s, tx: tx, vulns: tx.Bucket(bucketVulns), blobs: tx.Bucket(bucketBlobs)}
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("vulnerability %x: %w", k, err)
			}
			if _, err := rr.expand(binary.BigEndian.Uint64(k), rec); err != nil {
				return fmt.Errorf("vulnerability %x: %w", k, err)
			}
			name, _ := rr.str(rec.Updater)
			got[name]++
		}
		ic := tx.Bucket(bucketIndex).Cursor()
		vb := tx.Bucket(bucketVulns)
		for k, _ := ic.First(); k != nil; k, _ = ic.Next() {
			if len(k) < 10 {
				return fmt.Errorf("bad index key %q", k)
			}
			raw := vb.Get(k[len(k)-8:])
			if raw == nil {
				return fmt.Errorf("index entry %q points at no record", k)
			}
			rec, err := decodeRecord(raw)
			if err != nil {
				return err
			}
			if !bytes.Equal(k[:len(k)-8], indexPrefix(rec.PackageKind, rec.PackageName)) {
				return fmt.Errorf("index entry %q points at package %s/%s", k, rec.PackageKind, rec.PackageName)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verify %s: %w", s.path, err)
	}
	for name, n := range want {
		if got[name] != n {
			return fmt.Errorf("verify %s: updater %s claims %d records, has %d", s.path, name, n, got[name])
		}
	}
	for name, n := range got {
		if _, ok := want[name]; !ok {
			return fmt.Errorf("verify %s: %d records of unknown updater %s", s.path, n, name)
		}
	}
	return nil
}
