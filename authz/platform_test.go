package authz

import (
	"errors"
	"net/url"
	"slices"
	"testing"
)

func TestParsePlatform(t *testing.T) {
	for _, tc := range []struct {
		query string
		json  bool
		want  string
		bad   bool
	}{
		{"", false, "", false},
		{"platform=linux/arm64", false, "linux/arm64", false},
		{"platform=linux/aarch64", false, "linux/arm64", false},
		{"platform=linux/arm64/v8", false, "linux/arm64", false},
		{"platform=linux/x86_64", false, "linux/amd64", false},
		{"platform=linux/arm/v7", false, "linux/arm/v7", false},
		{"platform=linux/arm64&platform=linux/amd64", false, "", true},
		{"platform=" + url.QueryEscape("not a platform!"), false, "", true},
		{"platform=" + url.QueryEscape(`{"os":"linux","architecture":"arm64"}`), true, "linux/arm64", false},
		{"platform=" + url.QueryEscape(`{"os":"linux","architecture":"aarch64","variant":"v8"}`), true, "linux/arm64", false},
		{"platform=" + url.QueryEscape(`{"architecture":"arm64"}`), true, "", true},
		{"platform=linux/arm64", true, "", true},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := parsePlatform(q, tc.json)
		if tc.bad {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s (json %v): got %q, %v; want a malformed request", tc.query, tc.json, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s (json %v): got %q, %v; want %q", tc.query, tc.json, got, err, tc.want)
		}
	}
}

func TestPlatformsToJudge(t *testing.T) {
	host := hostPlatform()
	other := "linux/s390x"
	if host == other {
		other = "linux/arm64"
	}
	one := ImageInfo{ID: "sha256:1"}
	both := ImageInfo{ID: "sha256:2", Platforms: []string{host, other}}
	onlyOther := ImageInfo{ID: "sha256:3", Platforms: []string{other}}
	for _, tc := range []struct {
		name      string
		img       ImageInfo
		requested string
		sc        scope
		want      []string
	}{
		{"an image of one platform is itself", one, other, named, []string{""}},
		{"the platform named", both, other, named, []string{other}},
		{"a platform the image lacks: none", onlyOther, host, named, nil},
		{"none named: the host's", both, "", named, []string{host}},
		{"none named, host's missing: every one", onlyOther, "", named, []string{other}},
		{"a whole push or pull: every one", both, "", every, []string{host, other}},
		{"a push of one platform: that one", both, other, every, []string{other}},
		{"the platform the daemon acted on, even unlisted", onlyOther, host, acted, []string{host}},
		{"acted, none said: the host's", both, "", acted, []string{host}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := platformsToJudge(tc.img, tc.requested, tc.sc); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestImageKey(t *testing.T) {
	for _, tc := range []struct{ id, platform string }{{"sha256:ab", ""}, {"sha256:ab", "linux/arm64"}, {"sha256:ab", "linux/arm/v7"}} {
		id, pl := SplitImageKey(ImageKey(tc.id, tc.platform))
		if id != tc.id || pl != tc.platform {
			t.Errorf("%q %q came back as %q %q", tc.id, tc.platform, id, pl)
		}
	}
}
