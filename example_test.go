package gomlx_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ril3y/gomlx"
)

// Load the default model, ask one question greedily, and stream a second
// answer. (No "Output:" comment: it needs the model, so go test only
// compiles it; the tests check the same calls.)
func Example() {
	ctx := context.Background()
	model, err := gomlx.LoadModel(ctx, "") // the default model
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	out, err := model.Generate(ctx, gomlx.GenerateInput{
		Messages:  []gomlx.Message{{Role: gomlx.RoleUser, Content: "What is 2+2?"}},
		MaxTokens: 64,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Content)
	fmt.Printf("%d tokens at %.1f tok/s (%s)\n", out.TokenCount, out.TokensPerSecond, out.StopReason)

	in := gomlx.DefaultGenerateInput(gomlx.Message{Role: gomlx.RoleUser, Content: "Name a color."})
	for piece, err := range model.Stream(ctx, in) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(piece)
	}
	fmt.Println()
}

// Keep MLX within a budget on a machine that runs other things beside the
// model: past the memory limit MLX waits for queued work before it
// allocates more (slower, not an error), and no more than the cache limit
// of freed buffers is kept for reuse. (Compiled, not run: the memory tests
// check the same calls.)
func ExampleSetMemoryLimit() {
	previous, err := gomlx.SetMemoryLimit(2 << 30) // 2 GiB
	if err != nil {
		log.Fatal(err)
	}
	defer gomlx.SetMemoryLimit(previous)
	defer gomlx.SetCacheLimit(gomlx.SetCacheLimit(64 << 20)) // 64 MiB, restored after

	model, err := gomlx.LoadModel(context.Background(), "")
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()
	// ... generate as usual ...
}
