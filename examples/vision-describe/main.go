// Command vision-describe asks a vision model about an image.
//
//	go run ./examples/vision-describe MODEL IMAGE ["question"]
//
// Without a question it asks for a description. With a text-only model it
// says that the model does not support images.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ril3y/gomlx"
)

func main() {
	if len(os.Args) < 3 || len(os.Args) > 4 {
		fmt.Fprintln(os.Stderr, `usage: vision-describe MODEL IMAGE ["question"]`)
		os.Exit(2)
	}
	question := "Describe this image in detail."
	if len(os.Args) == 4 {
		question = os.Args[3]
	}
	if err := run(os.Args[1], os.Args[2], question); err != nil {
		fmt.Fprintln(os.Stderr, "vision-describe:", err)
		os.Exit(1)
	}
}

func run(modelPath, imagePath, question string) error {
	if _, err := os.Stat(imagePath); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	ctx := context.Background()
	model, err := gomlx.LoadModel(ctx, modelPath)
	if err != nil {
		return err
	}
	defer model.Close()
	if !model.SupportsVision() {
		info := model.Info()
		return fmt.Errorf("%s (%s) is a text-only model and does not support images; "+
			"use a vision model such as Qwen2.5-VL", info.Name, info.Architecture)
	}

	out, err := model.GenerateStream(ctx, gomlx.GenerateInput{
		Messages: []gomlx.Message{{
			Role:    gomlx.RoleUser,
			Content: question,
			Images:  []gomlx.Image{{Path: imagePath}},
		}},
		MaxTokens:   512,
		Temperature: 0.0, // greedy
	}, func(token string) { fmt.Print(token) })
	fmt.Println()
	if errors.Is(err, gomlx.ErrUnsupported) {
		return fmt.Errorf("the model cannot read this image: %w", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "[%d tokens, %.1f tok/s, %d prompt tokens]\n",
		out.TokenCount, out.TokensPerSecond, out.PromptTokens)
	return nil
}
