// generate_test.go - generation through the Go API on the default model.

package gomlx

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

const capitalPrompt = "What is the capital of France? Answer in one sentence."

func TestGenerateGreedy(t *testing.T) {
	m := sharedModel(t)
	out, err := m.Generate(context.Background(), greedy(capitalPrompt, 24))
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	t.Logf("%q %+v", out.Content, *out)
	if strings.TrimSpace(out.Content) == "" {
		t.Errorf("empty answer")
	}
	if out.TokenCount < 1 || out.TokenCount > 24 || out.TokenCount != len(out.Tokens) {
		t.Errorf("TokenCount %d, %d token ids, want 1..24 and equal", out.TokenCount, len(out.Tokens))
	}
	if out.PromptTokens < 5 || out.CachedTokens != 0 {
		t.Errorf("PromptTokens %d CachedTokens %d, want >= 5 and 0", out.PromptTokens, out.CachedTokens)
	}
	if out.TokensPerSecond <= 0 || out.TotalTimeMs <= 0 || out.TimeToFirstTokenMs <= 0 ||
		out.TimeToFirstTokenMs > out.TotalTimeMs || out.PeakMemory == 0 {
		t.Errorf("implausible stats %+v", *out)
	}
	switch out.StopReason {
	case StopEOS, StopMaxTokens:
	default:
		t.Errorf("StopReason %q, want eos or max_tokens", out.StopReason)
	}
	text, err := m.Detokenize(out.Tokens)
	if err != nil || !strings.Contains(text, strings.TrimSpace(out.Content)) {
		t.Errorf("Detokenize(Tokens) = %q, %v; want it to hold %q", text, err, out.Content)
	}
	again, err := m.Generate(context.Background(), greedy(capitalPrompt, 24))
	if err != nil || again.Content != out.Content {
		t.Errorf("greedy is not deterministic: %q then %q (%v)", out.Content, again.Content, err)
	}
}

// The Go binding adds nothing: the CLI's greedy answer is the same text.
func TestGenerateMatchesCLI(t *testing.T) {
	m := sharedModel(t)
	for _, prompt := range []string{capitalPrompt, "Write a haiku about the sea."} {
		cmd := exec.Command(cliPath(t), "run", "--temp", "0", "--max-tokens", "16", m.Info().Path, prompt)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
		}
		out, err := m.Generate(context.Background(), greedy(prompt, 16))
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		cli := strings.TrimSuffix(string(stdout), "\n")
		if cli != out.Content {
			t.Errorf("prompt %q:\n CLI %q\n Go  %q", prompt, cli, out.Content)
		}
	}
}

func TestGenerateRawPromptAndIDs(t *testing.T) {
	m := sharedModel(t)
	prompt, err := m.ChatPrompt(userMsg(capitalPrompt))
	if err != nil {
		t.Fatalf("ChatPrompt: %v", err)
	}
	if !strings.Contains(prompt, capitalPrompt) {
		t.Fatalf("ChatPrompt %q lacks the message", prompt)
	}
	viaMsgs, err := m.Generate(context.Background(), greedy(capitalPrompt, 12))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := m.Tokenize(prompt, false)
	if err != nil || len(ids) == 0 {
		t.Fatalf("Tokenize: %v, %d ids", err, len(ids))
	}
	viaIDs, err := m.Generate(context.Background(), GenerateInput{PromptIDs: ids, MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	if viaIDs.Content != viaMsgs.Content {
		t.Errorf("template ids give %q, messages give %q", viaIDs.Content, viaMsgs.Content)
	}
	raw, err := m.Generate(context.Background(), GenerateInput{Prompt: "The capital of France is", MaxTokens: 8})
	if err != nil || raw.TokenCount == 0 {
		t.Errorf("raw prompt: %v, %+v", err, raw)
	}
}

func TestTokenizeRoundTrip(t *testing.T) {
	m := sharedModel(t)
	for _, s := range []string{"Hello, world!", "naïve café 🚀 日本語", "  spaces\tand\nlines  "} {
		ids, err := m.Tokenize(s, false)
		if err != nil {
			t.Fatalf("Tokenize(%q): %v", s, err)
		}
		back, err := m.Detokenize(ids)
		if err != nil || back != s {
			t.Errorf("Detokenize(Tokenize(%q)) = %q, %v", s, back, err)
		}
	}
	if s, err := m.Detokenize(nil); err != nil || s != "" {
		t.Errorf("Detokenize(nil) = %q, %v", s, err)
	}
}

func TestGenerateStreamPiecesMakeContent(t *testing.T) {
	m := sharedModel(t)
	var pieces []string
	out, err := m.GenerateStream(context.Background(), greedy("Name three colors.", 24), func(s string) {
		pieces = append(pieces, s)
	})
	if err != nil {
		t.Fatalf("GenerateStream: %v", err)
	}
	if len(pieces) < 2 || strings.Join(pieces, "") != out.Content {
		t.Errorf("%d pieces %q join to %q, want Content %q", len(pieces), pieces, strings.Join(pieces, ""), out.Content)
	}
	plain, _ := m.Generate(context.Background(), greedy("Name three colors.", 24))
	if plain == nil || plain.Content != out.Content {
		t.Errorf("streaming changed the answer: %q vs %+v", out.Content, plain)
	}
}

func TestGenerateStreamFuncStops(t *testing.T) {
	m := sharedModel(t)
	errEnough := errors.New("enough")
	n := 0
	in := greedy("Count from one to twenty.", 64)
	in.IgnoreEOS = true
	out, err := m.GenerateStreamFunc(context.Background(), in, func(string) error {
		if n++; n == 3 {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("err %v, want the callback's error", err)
	}
	if out == nil || out.StopReason != StopCallback || out.TokenCount > 4 {
		t.Errorf("output %+v, want StopCallback after about 3 tokens", out)
	}
}

func TestGenerateStopString(t *testing.T) {
	m := sharedModel(t)
	in := greedy("Write one sentence about the sea.", 32)
	full, err := m.Generate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	// Stop at the third word of the greedy answer: the answer must end
	// right before its first occurrence.
	words := strings.Fields(full.Content)
	if len(words) < 4 {
		t.Fatalf("answer too short to test stop strings: %q", full.Content)
	}
	stop := " " + words[2]
	want := full.Content[:strings.Index(full.Content, stop)]
	in.Stop = []string{"never-generated-xyz", stop}
	out, err := m.Generate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.StopReason != StopString || out.Content != want {
		t.Errorf("with stop %q: %q (%s), want %q (stop_string)", stop, out.Content, out.StopReason, want)
	}
}

func TestSeedReproducible(t *testing.T) {
	m := sharedModel(t)
	gen := func(seed uint64) string {
		out, err := m.Generate(context.Background(), GenerateInput{
			Messages: userMsg("Tell me a short story about a cat."), MaxTokens: 16,
			Temperature: 0.8, Seed: Seed(seed),
		})
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		return out.Content
	}
	a, b := gen(42), gen(42)
	if a != b {
		t.Errorf("seed 42 gave %q then %q", a, b)
	}
	distinct := map[string]bool{a: true}
	for s := uint64(1); s <= 4; s++ {
		distinct[gen(s)] = true
	}
	if len(distinct) < 3 {
		t.Errorf("5 seeds gave only %d distinct answers: %v", len(distinct), distinct)
	}
}

func TestConcurrentGenerate(t *testing.T) {
	m := sharedModel(t)
	want, err := m.Generate(context.Background(), greedy(capitalPrompt, 12))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2; i++ {
				var pieces strings.Builder
				out, err := m.GenerateStream(context.Background(), greedy(capitalPrompt, 12), func(s string) { pieces.WriteString(s) })
				switch {
				case err != nil:
					errs <- err
				case out.Content != want.Content || pieces.String() != want.Content:
					errs <- fmt.Errorf("concurrent answer %q (stop %s, tokens %v, stream %q) differs from %q",
						out.Content, out.StopReason, out.Tokens, pieces.String(), want.Content)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSessionReusesCache(t *testing.T) {
	m := sharedModel(t)
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conv := userMsg("My name is Ada. Say hello to me.")
	first, err := s.Generate(context.Background(), GenerateInput{Messages: conv, MaxTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	conv = append(conv, Message{Role: RoleAssistant, Content: first.Content},
		Message{Role: RoleUser, Content: "What is my name?"})
	second, err := s.Generate(context.Background(), GenerateInput{Messages: conv, MaxTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	if second.CachedTokens < first.PromptTokens/2 {
		t.Errorf("second turn reused %d cached tokens; the first prompt had %d", second.CachedTokens, first.PromptTokens)
	}
	// The cache must not change the answer.
	fresh, err := m.Generate(context.Background(), GenerateInput{Messages: conv, MaxTokens: 16})
	if err != nil || fresh.Content != second.Content {
		t.Errorf("session answer %q, fresh answer %q (%v)", second.Content, fresh.Content, err)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	third, err := s.Generate(context.Background(), GenerateInput{Messages: conv, MaxTokens: 16})
	if err != nil || third.CachedTokens != 0 {
		t.Errorf("after Reset: %d cached tokens (%v)", third.CachedTokens, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Generate(context.Background(), GenerateInput{Messages: conv}); !errors.Is(err, ErrClosed) {
		t.Errorf("Generate on a closed session: %v, want ErrClosed", err)
	}
}

func TestCallbackPanicReachesCaller(t *testing.T) {
	m := sharedModel(t)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the callback's panic", r)
			}
		}()
		m.GenerateStream(context.Background(), greedy("hi", 8), func(string) { panic("boom") })
		t.Error("GenerateStream returned after its callback panicked")
	}()
	if out, err := m.GenerateStream(context.Background(), greedy("hi", 4), nil); err != nil || out.TokenCount == 0 {
		t.Errorf("after a callback panic (and with a nil callback): %+v, %v", out, err)
	}
}
