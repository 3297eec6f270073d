// errors.go - the error type of the package and its sentinels.

package gomlx

import (
	"errors"
	"strconv"
)

// Code is the status a failed call reports. It mirrors gomlx_status of the
// C API.
type Code int

// Status codes of the C API.
const (
	CodeNotFound     Code = 1 // a file or folder does not exist
	CodeUnsupported  Code = 2 // architecture, tensor type, feature
	CodeInvalidInput Code = 3 // bad argument, empty messages, prompt too long
	CodeFormat       Code = 4 // corrupt or inconsistent model files
	CodeCancelled    Code = 5 // the generation was cancelled
	CodeClosed       Code = 6 // the model or session was closed
	CodeBackend      Code = 7 // MLX reported an error (e.g. out of memory)
	CodeInternal     Code = 8
)

// Sentinel errors, one per Code. Every error this package returns for a
// failed call is an *Error that matches exactly one of them with errors.Is.
var (
	ErrModelNotFound = errors.New("gomlx: not found")
	ErrUnsupported   = errors.New("gomlx: unsupported")
	ErrBadInput      = errors.New("gomlx: invalid input")
	ErrFormat        = errors.New("gomlx: bad format")
	ErrCancelled     = errors.New("gomlx: cancelled")
	ErrClosed        = errors.New("gomlx: closed")
	ErrBackend       = errors.New("gomlx: backend error")
	ErrInternal      = errors.New("gomlx: internal error")
)

var codeNames = map[Code]string{
	CodeNotFound:     "not found",
	CodeUnsupported:  "unsupported",
	CodeInvalidInput: "invalid input",
	CodeFormat:       "bad format",
	CodeCancelled:    "cancelled",
	CodeClosed:       "closed",
	CodeBackend:      "backend error",
	CodeInternal:     "internal error",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return "status " + strconv.Itoa(int(c))
}

// sentinel returns the sentinel error of the code.
func (c Code) sentinel() error {
	switch c {
	case CodeNotFound:
		return ErrModelNotFound
	case CodeUnsupported:
		return ErrUnsupported
	case CodeInvalidInput:
		return ErrBadInput
	case CodeFormat:
		return ErrFormat
	case CodeCancelled:
		return ErrCancelled
	case CodeClosed:
		return ErrClosed
	case CodeBackend:
		return ErrBackend
	}
	return ErrInternal
}

// Error is a failed call: the status code, the C library's message, and for
// cancellations the cause (ctx.Err(), or ErrClosed when Close stopped the
// call). errors.Is(err, ErrX) matches the code's sentinel and the cause.
type Error struct {
	Code  Code
	Msg   string
	Cause error
}

func (e *Error) Error() string {
	s := "gomlx: " + e.Code.String()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Cause != nil {
		s += " (" + e.Cause.Error() + ")"
	}
	return s
}

// Unwrap gives the code's sentinel and the cause, if any.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Code.sentinel(), e.Cause}
	}
	return []error{e.Code.sentinel()}
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &gomlx.Error{Code: gomlx.CodeFormat}) works too.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Msg == "" && t.Cause == nil
}

func newError(code Code, msg string) *Error { return &Error{Code: code, Msg: msg} }

func errClosed() error { return newError(CodeClosed, "the model is closed") }
