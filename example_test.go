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
