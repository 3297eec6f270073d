// Package gomlx runs quantized text and vision LLMs locally on MLX (Metal
// on Apple Silicon, CUDA on NVIDIA, or the CPU), through libgomlx, the C
// library of this repository. The package is a thin binding: tokenizing,
// chat templates, the models and the generation loop all live in C.
//
// # Loading and generating
//
//	model, err := gomlx.LoadModel(ctx, "./models/Llama-3.2-3B-Instruct-4bit")
//	if err != nil { ... }
//	defer model.Close()
//
//	out, err := model.Generate(ctx, gomlx.GenerateInput{
//		Messages:  []gomlx.Message{{Role: gomlx.RoleUser, Content: "What is 2+2?"}},
//		MaxTokens: 64,
//	})
//	fmt.Println(out.Content, out.TokensPerSecond)
//
// A model is an MLX-format folder (config.json, *.safetensors,
// tokenizer.json) or a .gguf file; LoadModel(ctx, "") loads the default
// model (DefaultModelPath). Options: WithProgress, WithMaxTokens,
// WithDevice, WithContextLength, WithCPUKernels.
//
// # Sampling
//
// The zero values of GenerateInput mean: the model's default MaxTokens
// (2048 unless WithMaxTokens), top-p 0.9, no top-k or min-p, a random seed,
// and temperature 0, that is greedy decoding. Temperature is taken
// literally because 0 is a meaningful temperature: `Temperature: 0.0` is
// greedy, as the original README's vision example expects. For the sampled
// chat defaults (temperature 0.7, top-p 0.9) start from
// DefaultGenerateInput. Seed makes sampling reproducible.
//
// # Streaming
//
// GenerateStream calls a function with each piece of text (never half a
// UTF-8 character, never part of a stop string); GenerateStreamFunc's
// function may stop the generation by returning an error; Stream gives the
// pieces to a range loop as an iter.Seq2[string, error], and breaking out
// of the loop stops the generation.
//
// # Conversations
//
// Model.Generate keeps no state between calls. A Session keeps the KV
// cache of a conversation: give its Generate the whole conversation each
// turn, and the prefix it has seen is not computed again.
//
// # Cancellation and errors
//
// Every generation watches its context: when ctx is done the library stops
// between prefill chunks or tokens, and the partial output comes back with
// an error matching both ErrCancelled and ctx.Err(). Loading cannot be
// interrupted (see LoadModel). Failures are *Error values that match one
// of ErrModelNotFound, ErrUnsupported, ErrBadInput, ErrFormat, ErrCancelled,
// ErrClosed, ErrBackend or ErrInternal with errors.Is, and carry the C
// library's message.
//
// # Concurrency
//
// Model, Session and the package functions are safe for concurrent use.
// The generations of one model run one at a time on the model's C worker
// thread (MLX keeps its streams per thread); concurrent calls wait their
// turn. Close cancels the generations in flight and waits for them.
// Streaming callbacks run on that worker thread and must not call methods
// of the same model (the loop body of Stream may).
//
// # Memory
//
// GetMemoryStats reports MLX's active, peak and cached bytes for the whole
// process; ClearCache returns MLX's buffer cache to the system. A model's
// memory is freed by Close; a generation's by the time it returns.
// SetMemoryLimit and SetCacheLimit bound what MLX allocates before it waits
// for queued work and how much freed memory it keeps for reuse (both for
// the whole process), for machines that run other things beside the model.
//
// # Building
//
// cgo finds the library through cgo_flags_generated.go, which
// scripts/setup.sh writes for a checkout; `make build` builds libgomlx.
package gomlx
