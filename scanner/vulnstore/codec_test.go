package vulnstore

import (
	"reflect"
	"testing"
	"unique"

	"github.com/quay/claircore"
)

func TestRecordRoundTrip(t *testing.T) {
	recs := []*record{
		{},
		{Name: "CVE-2019-1543", Desc: 3, Issued: 1234567890, Links: 4, Severity: "high", NormSeverity: 4,
			PackageName: "openssl", PackageKind: "source", PackageVersion: "1", Package: 5, Dist: 6, Repo: 7,
			FixedIn: "1.1.0j-1", Range: &claircore.Range{Lower: claircore.Version{Kind: "dpkg", V: [10]int32{1, -2}}, Upper: claircore.Version{Kind: "dpkg"}},
			ArchOp: 2, Updater: 8, SelfSpace: "CVE", SelfName: "CVE-2019-1543",
			Aliases: []claircore.Alias{{Space: unique.Make("GHSA"), Name: "GHSA-x"}}, Invert: true},
	}
	for _, r := range recs {
		got, err := decodeRecord(r.encode(nil))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("got %+v\nwant %+v", got, r)
		}
	}
}

// FuzzDecodeRecord: a corrupted record is an error, never a panic or a
// huge allocation.
func FuzzDecodeRecord(f *testing.F) {
	f.Add((&record{Name: "CVE-1", Range: &claircore.Range{}, Aliases: []claircore.Alias{{Name: "x"}}}).encode(nil))
	f.Add([]byte{recordVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err == nil {
			if _, err := decodeRecord(r.encode(nil)); err != nil {
				t.Fatalf("re-encoded record does not decode: %v", err)
			}
		}
	})
}
