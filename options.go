// options.go - functional options of LoadModel.

package gomlx

// Device picks where a model runs.
type Device int

const (
	// DeviceAuto uses the GPU when MLX has one (Metal, CUDA), else the CPU.
	DeviceAuto Device = iota
	DeviceCPU
	DeviceGPU
)

func (d Device) String() string {
	switch d {
	case DeviceCPU:
		return "cpu"
	case DeviceGPU:
		return "gpu"
	}
	return "auto"
}

// DefaultMaxTokens is the MaxTokens a generation uses when neither the
// input nor WithMaxTokens set one.
const DefaultMaxTokens = 2048

// Option configures LoadModel.
type Option func(*loadConfig)

type loadConfig struct {
	progress      func(progress float32, message string)
	maxTokens     int
	device        Device
	contextLength int
	cpuKernels    int // -1 default, 0 off, 1 on
}

func newLoadConfig(opts []Option) loadConfig {
	cfg := loadConfig{maxTokens: DefaultMaxTokens, cpuKernels: -1}
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	return cfg
}

// WithProgress reports loading progress: a fraction in [0,1] and a short
// message. The function runs on the loading thread while LoadModel blocks.
func WithProgress(fn func(progress float32, message string)) Option {
	return func(c *loadConfig) { c.progress = fn }
}

// WithMaxTokens sets the model-level default for GenerateInput.MaxTokens
// (DefaultMaxTokens when not given). Values <= 0 are ignored.
func WithMaxTokens(n int) Option {
	return func(c *loadConfig) {
		if n > 0 {
			c.maxTokens = n
		}
	}
}

// WithDevice picks the device the model runs on (DeviceAuto by default).
func WithDevice(d Device) Option {
	return func(c *loadConfig) { c.device = d }
}

// WithContextLength caps the context (prompt plus answer) in tokens; 0, the
// default, means the model's own maximum.
func WithContextLength(n int) Option {
	return func(c *loadConfig) {
		if n > 0 {
			c.contextLength = n
		}
	}
}

// WithCPUKernels turns the library's own CPU quantized-matmul kernels on or
// off. Without this option they are on unless the environment variable
// GOMLX_CPU_KERNELS=0 turns them off.
func WithCPUKernels(on bool) Option {
	return func(c *loadConfig) {
		c.cpuKernels = 0
		if on {
			c.cpuKernels = 1
		}
	}
}
