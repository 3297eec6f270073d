// modelpath.go - where the default model is found.

package gomlx

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// DefaultModel is the default model's path relative to the module root.
const DefaultModel = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

const modulePath = "github.com/ril3y/gomlx"

// DefaultModelPath returns the model LoadModel loads for path "": the
// environment variable GOMLX_MODEL if set; else DefaultModel under the
// current directory if it exists there; else DefaultModel under the root
// of this module, found by walking up from the current directory to a
// go.mod that declares module github.com/ril3y/gomlx. If none of these
// exists it returns DefaultModel as is, and loading it fails with
// ErrModelNotFound.
func DefaultModelPath() string {
	if p := os.Getenv("GOMLX_MODEL"); p != "" {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return DefaultModel
	}
	if p := filepath.Join(wd, DefaultModel); exists(p) {
		return p
	}
	for dir := wd; ; {
		if isModuleRoot(dir) {
			if p := filepath.Join(dir, DefaultModel); exists(p) {
				return p
			}
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return DefaultModel
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// isModuleRoot reports whether dir holds this module's go.mod.
func isModuleRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == modulePath
		}
	}
	return false
}
