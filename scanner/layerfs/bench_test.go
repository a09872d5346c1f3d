package layerfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFromDirDpkgInfo reads a layer whose var/lib/dpkg/info holds
// 3,000 files, as a Debian image's does: only the status file is needed.
func BenchmarkFromDirDpkgInfo(b *testing.B) {
	root := b.TempDir()
	info := filepath.Join(root, "var/lib/dpkg/info")
	os.MkdirAll(info, 0o755)
	for i := 0; i < 3000; i++ {
		os.WriteFile(filepath.Join(info, fmt.Sprintf("pkg%d.list", i)), []byte("/usr/bin/x\n"), 0o644)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte("Package: a\n\n"), 0o644)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fs, err := FromDir(context.Background(), root, Limits{})
		if err != nil || fs.Entries["var/lib/dpkg/info"].Kind != Dir {
			b.Fatalf("%v %+v", err, fs)
		}
	}
}
