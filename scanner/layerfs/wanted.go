package layerfs

import (
	"path"
	"strings"
)

// Version changes whenever the wanted set or the extraction changes:
// cached FileSets of another version are not reused.
const Version = "2"

// wantedFiles are the files package and distribution scanners read.
var wantedFiles = []string{
	// distribution scanners
	"etc/os-release", "usr/lib/os-release", "etc/lsb-release", "etc/debian_version",
	"etc/alpine-release", "etc/redhat-release", "etc/centos-release", "etc/system-release",
	"etc/system-release-cpe", "etc/oracle-release", "etc/SuSE-release", "etc/photon-release",
	"etc/apk/repositories",
	// package databases
	"var/lib/dpkg/status", "lib/apk/db/installed",
}

// wantedDirs are directories whose regular files are all wanted (rpm
// keeps several files beside its database; distroless images keep one
// dpkg status file per package).
var wantedDirs = []string{
	"var/lib/rpm", "usr/lib/sysimage/rpm", "var/lib/dpkg/status.d",
	"root/buildinfo/content_manifests",
}

// markerDirs must exist for a scanner to look at a database: claircore's
// dpkg scanner wants var/lib/dpkg/info beside status. Their contents are
// not needed.
var markerDirs = []string{"var/lib/dpkg/info"}

// dpkgInfo holds dpkg's per-package file lists.
const dpkgInfo = "var/lib/dpkg/info"

// FileList reports whether p is one of dpkg's per-package file lists
// (var/lib/dpkg/info/NAME.list or NAME:ARCH.list). Only their presence is
// recorded, never their contents: a package that a later layer dropped
// from the database while its list (and so its files) stayed is still
// installed.
func FileList(p string) bool {
	return path.Dir(p) == dpkgInfo && strings.HasSuffix(p, ".list")
}

// Wanted reports whether p (clean, relative) is a wanted file.
func Wanted(p string) bool {
	for _, f := range wantedFiles {
		if p == f {
			return true
		}
	}
	dir := path.Dir(p)
	for _, d := range wantedDirs {
		if dir == d {
			return true
		}
	}
	return false
}

// OnWantedPath reports whether p is a wanted file, a wanted or marker
// directory, or an ancestor of one: the paths whose symlinks and
// whiteouts matter.
func OnWantedPath(p string) bool {
	if Wanted(p) {
		return true
	}
	for _, list := range [][]string{wantedFiles, wantedDirs, markerDirs} {
		for _, w := range list {
			if w == p || strings.HasPrefix(w, p+"/") {
				return true
			}
		}
	}
	return false
}

// readsChildren reports whether p is a directory whose files are wanted.
// A marker directory only needs to exist: dpkg's info holds thousands of
// files, and listing them would cost a system call each.
func readsChildren(p string) bool {
	for _, d := range wantedDirs {
		if p == d {
			return true
		}
	}
	return false
}

// AllWanted lists the wanted files and directories, for directory reads.
func AllWanted() (files, dirs []string) {
	return append([]string(nil), wantedFiles...), append(append([]string(nil), wantedDirs...), markerDirs...)
}

// Clean normalizes a path from an archive or a link: relative, no "."
// or ".." segments, "" for the root. ok is false when the path climbs
// above the root ("../x"), which archives must not contain.
func Clean(p string) (string, bool) {
	p = strings.TrimPrefix(p, "./")
	if p == "" || p == "." || p == "/" {
		return "", true
	}
	rooted := strings.HasPrefix(p, "/")
	c := path.Clean("/" + p)
	if !rooted {
		// A relative archive path that climbs out: path.Clean on "/"+p
		// would hide it, so check the segments.
		depth := 0
		for _, seg := range strings.Split(p, "/") {
			switch seg {
			case "..":
				depth--
				if depth < 0 {
					return "", false
				}
			case "", ".":
			default:
				depth++
			}
		}
	}
	return strings.TrimPrefix(c, "/"), true
}
