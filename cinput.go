// cinput.go - GenerateInput and messages as C structs, in C memory, with
// the checks that keep obviously bad input from reaching the library.

package gomlx

/*
#include <stdlib.h>
#include "gomlx.h"
*/
import "C"

import (
	"bytes"
	"fmt"
	"image/png"
	"unsafe"
)

func (r Role) c() (C.gomlx_role, error) {
	switch r {
	case RoleSystem:
		return C.GOMLX_ROLE_SYSTEM, nil
	case RoleUser:
		return C.GOMLX_ROLE_USER, nil
	case RoleAssistant:
		return C.GOMLX_ROLE_ASSISTANT, nil
	}
	return 0, newError(CodeInvalidInput, fmt.Sprintf("unknown role %q", string(r)))
}

// messages copies msgs into C memory owned by the arena.
func (a *cArena) messages(msgs []Message) (*C.gomlx_message, C.int, error) {
	n := len(msgs)
	arr := (*C.gomlx_message)(a.alloc(n * C.sizeof_gomlx_message))
	out := unsafe.Slice(arr, n)
	for i, msg := range msgs {
		role, err := msg.Role.c()
		if err != nil {
			return nil, 0, err
		}
		out[i].role = role
		out[i].content = a.str(msg.Content)
		if len(msg.Images) == 0 {
			continue
		}
		imgs := unsafe.Slice((*C.gomlx_image)(a.alloc(len(msg.Images)*C.sizeof_gomlx_image)), len(msg.Images))
		for j, img := range msg.Images {
			if err := a.image(&imgs[j], img); err != nil {
				return nil, 0, fmt.Errorf("message %d, image %d: %w", i, j, err)
			}
		}
		out[i].images = &imgs[0]
		out[i].n_images = C.int(len(msg.Images))
	}
	return arr, C.int(n), nil
}

func (a *cArena) image(dst *C.gomlx_image, img Image) error {
	set := 0
	for _, ok := range []bool{img.Path != "", len(img.Data) > 0, img.Image != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return newError(CodeInvalidInput, "an Image needs exactly one of Path, Data, Image")
	}
	switch {
	case img.Path != "":
		dst.path = a.str(img.Path)
	case len(img.Data) > 0:
		dst.data = a.bytes(img.Data)
		dst.size = C.size_t(len(img.Data))
	default:
		var buf bytes.Buffer
		if err := png.Encode(&buf, img.Image); err != nil {
			return newError(CodeInvalidInput, "encoding the image as PNG: "+err.Error())
		}
		dst.data = a.bytes(buf.Bytes())
		dst.size = C.size_t(buf.Len())
	}
	return nil
}

// checkImages fails early, with a clear message, when a text-only model
// is given images.
func (m *Model) checkImages(msgs []Message) error {
	if m.info.SupportsVision {
		return nil
	}
	for _, msg := range msgs {
		if len(msg.Images) > 0 {
			return newError(CodeUnsupported, fmt.Sprintf(
				"model %s (%s) does not support images", m.info.Name, m.info.Architecture))
		}
	}
	return nil
}

// check validates the input before any C call.
func (in *GenerateInput) check() error {
	bad := func(format string, args ...any) error {
		return newError(CodeInvalidInput, fmt.Sprintf(format, args...))
	}
	switch {
	case len(in.Messages) == 0 && in.Prompt == "" && len(in.PromptIDs) == 0:
		return bad("no messages, prompt or prompt ids")
	case in.MaxTokens < 0:
		return bad("MaxTokens %d < 0", in.MaxTokens)
	case in.Temperature < 0:
		return bad("Temperature %g < 0", in.Temperature)
	case in.TopP < 0 || in.TopP > 1:
		return bad("TopP %g outside [0,1]", in.TopP)
	case in.TopK < 0:
		return bad("TopK %d < 0", in.TopK)
	case in.MinP < 0 || in.MinP > 1:
		return bad("MinP %g outside [0,1]", in.MinP)
	}
	return nil
}

// params fills the C generation parameters; strings go to the arena.
func (in *GenerateInput) params(a *cArena, defaultMaxTokens int) C.gomlx_generate_params {
	p := C.gomlx_generate_params_default()
	p.max_tokens = C.int(defaultMaxTokens)
	if in.MaxTokens > 0 {
		p.max_tokens = C.int(in.MaxTokens)
	}
	p.temperature = C.float(in.Temperature)
	p.top_p = C.float(DefaultTopP)
	if in.TopP > 0 {
		p.top_p = C.float(in.TopP)
	}
	p.top_k = C.int(in.TopK)
	p.min_p = C.float(in.MinP)
	if in.Seed != nil {
		p.seed = C.uint64_t(*in.Seed)
		p.has_seed = 1
	}
	if len(in.Stop) > 0 {
		stops := unsafe.Slice((**C.char)(a.alloc(len(in.Stop)*int(unsafe.Sizeof((*C.char)(nil))))), len(in.Stop))
		for i, s := range in.Stop {
			stops[i] = a.str(s)
		}
		p.stop = &stops[0]
		p.n_stop = C.int(len(in.Stop))
	}
	if in.IgnoreEOS {
		p.ignore_eos = 1
	}
	return p
}
