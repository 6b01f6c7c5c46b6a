package otelcoltest

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const toolsDir = "../../tools/otelcol/"

// The committed distribution is the builder's output for
// builder-config.yaml, at the versions this package and the Makefile name.
// It needs neither the network nor the builder, so it runs in every
// `go test ./...`; `make check-otelcol` regenerates dist/ and compares
// every byte.
func TestDistMatchesBuilderConfig(t *testing.T) {
	b, err := os.ReadFile(toolsDir + "builder-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Dist struct {
			Module, Name, Version string
		}
		Extensions, Receivers, Processors, Exporters, Providers []struct{ GoMod string }
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("builder-config.yaml: %v", err)
	}
	if "v"+cfg.Dist.Version != Version {
		t.Errorf("builder-config.yaml dist.version %s, otelcoltest.Version %s", cfg.Dist.Version, Version)
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^OTELCOL_VERSION := ` + regexp.QuoteMeta(Version) + `$`).Match(makefile) {
		t.Errorf("the Makefile's OTELCOL_VERSION is not %s", Version)
	}

	gomod, err := os.ReadFile(toolsDir + "dist/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	components, err := os.ReadFile(toolsDir + "dist/components.go")
	if err != nil {
		t.Fatal(err)
	}
	mainGo, err := os.ReadFile(toolsDir + "dist/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(gomod), "module "+cfg.Dist.Module+"\n") {
		t.Errorf("dist/go.mod is not module %s", cfg.Dist.Module)
	}
	if !strings.Contains(string(mainGo), `Command:     "`+cfg.Dist.Name+`"`) ||
		!strings.Contains(string(mainGo), `Version:     "`+cfg.Dist.Version+`"`) {
		t.Errorf("dist/main.go is not for %s %s", cfg.Dist.Name, cfg.Dist.Version)
	}
	var mods []string
	for _, list := range [][]struct{ GoMod string }{cfg.Extensions, cfg.Receivers, cfg.Processors, cfg.Exporters, cfg.Providers} {
		for _, m := range list {
			mods = append(mods, m.GoMod)
		}
	}
	for _, m := range mods {
		path, version, _ := strings.Cut(m, " ")
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(path) + ` ` + regexp.QuoteMeta(version) + `$`).Match(gomod) {
			t.Errorf("dist/go.mod does not require %s %s: run 'make otelcol-sources'", path, version)
		}
		// Components are registered in components.go with their module
		// and version, providers in main.go by import path.
		if !strings.Contains(string(components), `"`+m+`"`) && !strings.Contains(string(mainGo), `"`+path+`"`) {
			t.Errorf("dist/ does not build in %s: run 'make otelcol-sources'", m)
		}
	}
	// Nothing more than the config lists: every component registered in
	// components.go comes from builder-config.yaml.
	for _, got := range regexp.MustCompile(`(?m)^\s+\w+\.NewFactory\(\)\.Type\(\): "([^"]+)",$`).FindAllStringSubmatch(string(components), -1) {
		found := false
		for _, m := range mods {
			found = found || m == got[1]
		}
		if !found {
			t.Errorf("dist/components.go registers %s, which builder-config.yaml does not list", got[1])
		}
	}
}
