// types.go - the plain data types of the API: messages, inputs, outputs.

package gomlx

import "image"

// Role is who wrote a message.
type Role string

const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// Message is one turn of a conversation. Images are only accepted by
// vision models (see Model.SupportsVision).
type Message struct {
	Role    Role
	Content string
	Images  []Image
}

// Image is an input image given in exactly one of three ways: a file path,
// encoded bytes (PNG or JPEG), or a decoded image.Image (encoded to PNG in
// Go and passed to the library as bytes).
type Image struct {
	Path  string
	Data  []byte
	Image image.Image
}

// GenerateInput is one generation request.
//
// The prompt is Messages rendered with the model's chat template; when
// Messages is empty, Prompt is used as raw text (no template; BOS is added
// if the tokenizer adds one); when both are empty, PromptIDs are fed as
// they are.
//
// Zero values: MaxTokens 0 means the model's default (WithMaxTokens, else
// DefaultMaxTokens = 2048); TopP 0 means DefaultTopP (0.9; use 1 to turn
// top-p off); TopK 0 and MinP 0 are off; Seed nil means a random seed.
//
// Temperature 0 means greedy decoding: the zero value is taken literally,
// because 0 is a meaningful temperature and `Temperature: 0.0` must mean
// greedy, as in the vision example of the original README. Greedy is also
// the least surprising default for a library (the same input gives the
// same answer). For the sampled chat defaults of the original README
// (temperature 0.7, top-p 0.9) start from DefaultGenerateInput() or set
// Temperature: DefaultTemperature.
type GenerateInput struct {
	Messages  []Message
	Prompt    string
	PromptIDs []int32

	MaxTokens   int
	Temperature float32
	TopP        float32
	TopK        int
	MinP        float32
	Seed        *uint64
	Stop        []string // stop strings, matched across token boundaries

	// IgnoreEOS keeps generating past the end-of-sequence token until
	// MaxTokens, a stop string or the context limit; meant for benchmarks.
	IgnoreEOS bool
}

// Sampling defaults of the original README.
const (
	DefaultTemperature float32 = 0.7
	DefaultTopP        float32 = 0.9
)

// DefaultGenerateInput returns an input with the README's sampling
// defaults: temperature 0.7, top-p 0.9, the model's default MaxTokens.
func DefaultGenerateInput(messages ...Message) GenerateInput {
	return GenerateInput{Messages: messages, Temperature: DefaultTemperature, TopP: DefaultTopP}
}

// Seed returns a pointer to s, for GenerateInput.Seed.
func Seed(s uint64) *uint64 { return &s }

// StopReason says why a generation ended.
type StopReason string

const (
	StopEOS       StopReason = "eos"         // the model ended its answer
	StopString    StopReason = "stop_string" // a stop string was generated
	StopMaxTokens StopReason = "max_tokens"  // MaxTokens were generated
	StopCancelled StopReason = "cancelled"   // ctx was cancelled or the model closed
	StopCallback  StopReason = "callback"    // the token callback asked to stop
	StopContext   StopReason = "context"     // the context window is full
)

// GenerateOutput is the answer and the statistics of one generation.
type GenerateOutput struct {
	Content string  // the answer, stop string excluded
	Tokens  []int32 // the generated token ids

	TokenCount            int     // generated tokens
	PromptTokens          int     // prompt tokens prefilled (after cache reuse)
	CachedTokens          int     // prompt tokens reused from the session's cache
	TokensPerSecond       float64 // decode speed
	PromptTokensPerSecond float64 // prefill speed
	TimeToFirstTokenMs    float64
	TotalTimeMs           float64
	PeakMemory            uint64 // bytes, MLX's peak during the call
	StopReason            StopReason
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	Path         string // as given to LoadModel (resolved for the default model)
	Architecture string // "llama", "qwen2", "gemma2", ...
	Format       string // "mlx" or "gguf"
	Name         string // folder or file name
	DType        string // activation dtype: "bfloat16", "float16", "float32"
	Quantization string // "4-bit affine, group 64", "none", ...
	Notes        string // conversions made while loading, or ""
	Device       string // "cpu" or "gpu"

	VocabSize        int
	HiddenSize       int
	IntermediateSize int
	NumLayers        int
	NumHeads         int
	NumKVHeads       int
	HeadDim          int
	ContextLength    int
	SupportsVision   bool

	NumParameters   uint64
	WeightBytes     uint64 // bytes of all weights as loaded
	KVBytesPerToken uint64
	// StepWeightBytes is what one decoded token reads of the weights: all
	// of them, less an untied input embedding table but its one row.
	StepWeightBytes uint64
}

// MemoryStats are MLX's memory counters for the whole process, in bytes.
type MemoryStats struct {
	Active uint64 // held by live arrays
	Peak   uint64 // high-water mark since the last ResetPeakMemory
	Cache  uint64 // freed buffers MLX keeps for reuse (see ClearCache)
}
