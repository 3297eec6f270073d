// model.go - loading and closing a model, and the calls that need no
// session: info, tokenizer, chat template.

package gomlx

/*
#include <stdlib.h>
#include "gomlx.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Model is a loaded model. All its methods are safe for concurrent use.
// Generations of one model run one at a time on the model's own C worker
// thread; concurrent calls queue there. Close frees it.
type Model struct {
	// mu is held for reading by every call that uses ptr, and for writing
	// by Close, which sets ptr to nil.
	mu  sync.RWMutex
	ptr *C.gomlx_model

	info      ModelInfo
	maxTokens int

	// closing is cancelled when Close starts: calls in flight are
	// cancelled and new ones fail with ErrClosed.
	closing     context.Context
	stopClosing context.CancelFunc

	sessMu   sync.Mutex
	sessions map[*Session]struct{}
}

// LoadModel loads a model from an MLX-format folder (config.json,
// *.safetensors, tokenizer.json) or a .gguf file. path "" loads the default
// model (see DefaultModelPath).
//
// ctx is checked before loading starts; the load itself runs in C and
// cannot be interrupted. If ctx is cancelled while it runs, LoadModel frees
// the model once the load has finished and returns ctx.Err().
func LoadModel(ctx context.Context, path string, opts ...Option) (*Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := newLoadConfig(opts)
	isDefault := path == ""
	if isDefault {
		path = DefaultModelPath()
	}

	params := C.gomlx_load_params_default()
	params.device = C.gomlx_device(cfg.device)
	params.context_length = C.int(cfg.contextLength)
	params.cpu_kernels = C.int(cfg.cpuKernels)
	var progress *progressSink
	if cfg.progress != nil {
		progress = &progressSink{fn: cfg.progress}
		h := cgo.NewHandle(progress)
		defer h.Delete()
		setProgressCallback(&params, h)
	}

	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ptr *C.gomlx_model
	err := call(func() C.gomlx_status { return C.gomlx_model_load(cpath, &params, &ptr) })
	if progress != nil && progress.panicked {
		C.gomlx_model_free(ptr)
		panic(progress.panicVal)
	}
	if err != nil {
		if e := err.(*Error); isDefault && e.Code == CodeNotFound {
			e.Msg += " (the default model: run scripts/setup.sh, or set GOMLX_MODEL)"
		}
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		C.gomlx_model_free(ptr)
		return nil, err
	}

	m := &Model{ptr: ptr, maxTokens: cfg.maxTokens, sessions: map[*Session]struct{}{}}
	m.closing, m.stopClosing = context.WithCancel(context.Background())
	if err := m.readInfo(path); err != nil {
		C.gomlx_model_free(ptr)
		return nil, err
	}
	return m, nil
}

func (m *Model) readInfo(path string) error {
	var ci C.gomlx_model_info
	if err := call(func() C.gomlx_status { return C.gomlx_model_get_info(m.ptr, &ci) }); err != nil {
		return err
	}
	m.info = ModelInfo{
		Path:             path,
		Architecture:     C.GoString(ci.architecture),
		Format:           C.GoString(ci.format),
		Name:             C.GoString(ci.name),
		DType:            C.GoString(ci.dtype),
		Quantization:     C.GoString(ci.quantization),
		Notes:            C.GoString(ci.notes),
		Device:           C.GoString(ci.device),
		VocabSize:        int(ci.vocab_size),
		HiddenSize:       int(ci.hidden_size),
		IntermediateSize: int(ci.intermediate_size),
		NumLayers:        int(ci.num_layers),
		NumHeads:         int(ci.num_heads),
		NumKVHeads:       int(ci.num_kv_heads),
		HeadDim:          int(ci.head_dim),
		ContextLength:    int(ci.context_length),
		SupportsVision:   ci.supports_vision != 0,
		NumParameters:    uint64(ci.num_parameters),
		WeightBytes:      uint64(ci.weight_bytes),
		KVBytesPerToken:  uint64(ci.kv_bytes_per_token),
		StepWeightBytes:  uint64(ci.step_weight_bytes),
	}
	return nil
}

// Info describes the model. It stays available after Close.
func (m *Model) Info() ModelInfo { return m.info }

// SupportsVision reports whether the model accepts images.
func (m *Model) SupportsVision() bool { return m.info.SupportsVision }

// acquire returns the C model, held open until release; ErrClosed once
// Close has started.
func (m *Model) acquire() (*C.gomlx_model, error) {
	if m == nil {
		return nil, errClosed()
	}
	m.mu.RLock()
	if m.ptr == nil || m.closing.Err() != nil {
		m.mu.RUnlock()
		return nil, errClosed()
	}
	return m.ptr, nil
}

func (m *Model) release() { m.mu.RUnlock() }

// Close cancels the generations in flight, waits for them to return, frees
// the model's sessions and the model. It is idempotent; afterwards every
// method that returns an error returns one matching ErrClosed.
func (m *Model) Close() error {
	if m == nil {
		return nil
	}
	m.stopClosing()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ptr == nil {
		return nil
	}
	m.sessMu.Lock()
	for s := range m.sessions {
		s.free()
	}
	m.sessions = nil
	m.sessMu.Unlock()
	C.gomlx_model_free(m.ptr)
	m.ptr = nil
	return nil
}

// Tokenize returns the token ids of text. addSpecial adds BOS/EOS as the
// tokenizer's post-processor would; special tokens written in the text are
// always recognized.
func (m *Model) Tokenize(text string, addSpecial bool) ([]int32, error) {
	mp, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	add := C.int(0)
	if addSpecial {
		add = 1
	}
	var ids *C.int32_t
	var n C.size_t
	err = call(func() C.gomlx_status {
		return C.gomlx_tokenize(mp, ctext, C.size_t(len(text)), add, &ids, &n)
	})
	if err != nil {
		return nil, err
	}
	defer C.gomlx_free(unsafe.Pointer(ids))
	out := make([]int32, int(n))
	if n > 0 {
		copy(out, unsafe.Slice((*int32)(unsafe.Pointer(ids)), int(n)))
	}
	return out, nil
}

// Detokenize returns the text of ids, special tokens included.
func (m *Model) Detokenize(ids []int32) (string, error) {
	mp, err := m.acquire()
	if err != nil {
		return "", err
	}
	defer m.release()
	var cids *C.int32_t
	if len(ids) > 0 {
		cids = (*C.int32_t)(unsafe.Pointer(&ids[0])) // read during the call only
	}
	var text *C.char
	err = call(func() C.gomlx_status {
		return C.gomlx_detokenize(mp, cids, C.size_t(len(ids)), &text)
	})
	if err != nil {
		return "", err
	}
	defer C.gomlx_free(unsafe.Pointer(text))
	return C.GoString(text), nil
}

// ChatPrompt returns the prompt text the model's chat template makes of
// messages, with the generation prompt for the assistant's answer.
func (m *Model) ChatPrompt(messages []Message) (string, error) {
	if len(messages) == 0 {
		return "", newError(CodeInvalidInput, "no messages")
	}
	if err := m.checkImages(messages); err != nil {
		return "", err
	}
	mp, err := m.acquire()
	if err != nil {
		return "", err
	}
	defer m.release()
	var a cArena
	defer a.free()
	msgs, n, err := a.messages(messages)
	if err != nil {
		return "", err
	}
	var text *C.char
	err = call(func() C.gomlx_status { return C.gomlx_apply_chat_template(mp, msgs, n, &text) })
	if err != nil {
		return "", err
	}
	defer C.gomlx_free(unsafe.Pointer(text))
	return C.GoString(text), nil
}
