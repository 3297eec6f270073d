// fixtures_test.go - the tiny reference models of testdata/models through
// the Go API: greedy tokens equal the reference's (mlx-lm's generate loop,
// or transformers where the fixture says mlx-lm is inexact).

package gomlx

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

type greedyRef struct {
	PromptIDs       []int32 `json:"prompt_ids"`
	MLXTokens       []int32 `json:"mlx_tokens"`
	HFTokens        []int32 `json:"hf_tokens"`
	HFDequantTokens []int32 `json:"hf_dequant_tokens"`
	MLXExact        bool    `json:"mlx_lm_exact"`
}

func (r *greedyRef) want() []int32 {
	if r.MLXExact {
		return r.MLXTokens
	}
	if r.HFTokens != nil {
		return r.HFTokens
	}
	return r.HFDequantTokens
}

func TestFixtures(t *testing.T) {
	refs, _ := filepath.Glob(filepath.Join("testdata", "models", "*", "reference", "greedy.json"))
	if len(refs) == 0 {
		t.Fatal("no fixtures under testdata/models (tools/make_fixtures.sh makes them)")
	}
	for _, refPath := range refs {
		dir := filepath.Dir(filepath.Dir(refPath))
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(refPath)
			if err != nil {
				t.Fatal(err)
			}
			var ref greedyRef
			if err := json.Unmarshal(data, &ref); err != nil {
				t.Fatalf("%s: %v", refPath, err)
			}
			want := ref.want()
			m, err := LoadModel(context.Background(), dir)
			if err != nil {
				t.Fatalf("LoadModel: %v", err)
			}
			defer m.Close()

			in := GenerateInput{PromptIDs: ref.PromptIDs, MaxTokens: len(want), IgnoreEOS: true}
			out, err := m.Generate(context.Background(), in)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if !slices.Equal(out.Tokens, want) {
				t.Errorf("greedy tokens\n got  %v\n want %v", out.Tokens, want)
			}

			// A session continues from its cache: half the answer, then
			// the prompt plus that half, gives the same tokens.
			s, err := m.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			half := len(want) / 2
			first, err := s.Generate(context.Background(), GenerateInput{PromptIDs: ref.PromptIDs, MaxTokens: half, IgnoreEOS: true})
			if err != nil {
				t.Fatal(err)
			}
			cont := append(slices.Clone(ref.PromptIDs), first.Tokens...)
			second, err := s.Generate(context.Background(), GenerateInput{PromptIDs: cont, MaxTokens: len(want) - half, IgnoreEOS: true})
			if err != nil {
				t.Fatal(err)
			}
			if second.CachedTokens < len(ref.PromptIDs) {
				t.Errorf("the second call reused %d cached tokens, want >= %d", second.CachedTokens, len(ref.PromptIDs))
			}
			if got := append(first.Tokens, second.Tokens...); !slices.Equal(got, want) {
				t.Errorf("tokens through the session cache\n got  %v\n want %v", got, want)
			}

			// The tokenizer round-trips the fixture's own text.
			text, err := m.Detokenize(ref.PromptIDs)
			if err != nil {
				t.Fatal(err)
			}
			ids, err := m.Tokenize(text, false)
			if err != nil {
				t.Fatal(err)
			}
			back, err := m.Detokenize(ids)
			if err != nil || back != text {
				t.Errorf("Detokenize(Tokenize(%q)) = %q, %v", text, back, err)
			}
		})
	}
}
