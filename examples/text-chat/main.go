// Command text-chat is an interactive chat with a local model.
//
//	go run ./examples/text-chat [flags] [MODEL]
//
// MODEL is an MLX-format folder or a .gguf file; without it the default
// model is used (see gomlx.DefaultModelPath). The conversation is kept in a
// gomlx.Session, so each turn reuses the KV cache of the turns before it.
// Commands: /reset starts over, /quit (or end of input) leaves. Ctrl-C
// stops the answer being written.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/ril3y/gomlx"
)

func main() {
	temp := flag.Float64("temp", float64(gomlx.DefaultTemperature), "temperature (0 = greedy)")
	maxTokens := flag.Int("max-tokens", 1024, "most tokens per answer")
	system := flag.String("system", "", "a system message")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: text-chat [flags] [MODEL]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), float32(*temp), *maxTokens, *system); err != nil {
		fmt.Fprintln(os.Stderr, "text-chat:", err)
		os.Exit(1)
	}
}

func run(path string, temp float32, maxTokens int, system string) error {
	ctx := context.Background()
	model, err := gomlx.LoadModel(ctx, path, gomlx.WithProgress(func(p float32, msg string) {
		fmt.Fprintf(os.Stderr, "\rloading %3.0f%% %-40s", p*100, msg)
	}))
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	defer model.Close()
	info := model.Info()
	fmt.Fprintf(os.Stderr, "%s (%s, %s) on %s. /reset starts over, /quit leaves.\n",
		info.Name, info.Architecture, info.Quantization, info.Device)

	session, err := model.NewSession()
	if err != nil {
		return err
	}
	defer session.Close()
	var conv []gomlx.Message
	if system != "" {
		conv = append(conv, gomlx.Message{Role: gomlx.RoleSystem, Content: system})
	}
	start := len(conv)

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for {
		fmt.Print("\n> ")
		if !in.Scan() {
			fmt.Println()
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		switch line {
		case "":
			continue
		case "/quit", "/exit":
			return nil
		case "/reset":
			conv = conv[:start]
			if err := session.Reset(); err != nil {
				return err
			}
			fmt.Println("(conversation cleared)")
			continue
		}
		conv = append(conv, gomlx.Message{Role: gomlx.RoleUser, Content: line})

		// Ctrl-C during an answer cancels only that answer.
		turnCtx, stop := signal.NotifyContext(ctx, os.Interrupt)
		out, err := session.GenerateStream(turnCtx, gomlx.GenerateInput{
			Messages: conv, MaxTokens: maxTokens, Temperature: temp,
		}, func(token string) { fmt.Print(token) })
		stop()
		fmt.Println()
		if errors.Is(err, gomlx.ErrCancelled) {
			fmt.Fprintln(os.Stderr, "(stopped)")
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		if out == nil { // nothing was generated: forget the question
			conv = conv[:len(conv)-1]
			continue
		}
		conv = append(conv, gomlx.Message{Role: gomlx.RoleAssistant, Content: out.Content})
		fmt.Fprintf(os.Stderr, "[%d tokens, %.1f tok/s, %d prompt tokens (%d cached), %s]\n",
			out.TokenCount, out.TokensPerSecond, out.PromptTokens, out.CachedTokens, out.StopReason)
	}
}
