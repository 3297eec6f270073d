// modelpath_test.go - how the default model is found.

package gomlx

import (
	"os"
	"path/filepath"
	"testing"
)

func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(old) })
}

func TestDefaultModelPath(t *testing.T) {
	t.Setenv("GOMLX_MODEL", "/some/model.gguf")
	if got := DefaultModelPath(); got != "/some/model.gguf" {
		t.Errorf("with GOMLX_MODEL: %q", got)
	}
	t.Setenv("GOMLX_MODEL", "")
	want := defaultModelFile(t) // fails the test when the model is missing
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want != filepath.Join(root, DefaultModel) {
		t.Errorf("from the module root: %q", want)
	}
	// From a subfolder the module root is found by walking up.
	chdir(t, filepath.Join(root, "examples"))
	if got := DefaultModelPath(); got != want {
		t.Errorf("from examples/: %q, want %q", got, want)
	}
	// Outside the module nothing is found.
	chdir(t, t.TempDir())
	if got := DefaultModelPath(); got != DefaultModel {
		t.Errorf("outside the module: %q, want %q", got, DefaultModel)
	}
}
