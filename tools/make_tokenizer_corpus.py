#!/usr/bin/env python3
"""Writes testdata/tokenizer_corpus.txt: the lines the tokenizer tests encode
with gomlx and with Hugging Face tokenizers. Deterministic (fixed seed); one
test case per line, so no line holds "\n" (a few hold a lone "\r").

It mixes English prose, Chinese/Japanese/Korean, emoji (ZWJ sequences, skin
tones, flags), code, whitespace runs, numbers, punctuation runs, composed and
decomposed accents (NFC), RTL text, other scripts, Unicode spaces, special
tokens written into the text and apostrophe contractions.
Run: python3 tools/make_tokenizer_corpus.py"""
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "testdata", "tokenizer_corpus.txt")

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.",
    "In the beginning the Universe was created. This has made a lot of people very angry.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "Machine learning models are trained on large amounts of text data.",
    "The capital of France is Paris, and the capital of Japan is Tokyo.",
    "Please summarize the following article in three sentences.",
    "What is the square root of 144? The answer is 12.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Tokenizers split text into pieces that a language model can understand.",
    "He said, \"Don't worry about it,\" and walked away without another word.",
    "The meeting was moved from Tuesday at 3:30 PM to Thursday at 10:00 AM.",
    "Alice was beginning to get very tired of sitting by her sister on the bank.",
    "A journey of a thousand miles begins with a single step.",
    "To be, or not to be, that is the question.",
    "The mitochondria is the powerhouse of the cell.",
    "Hello, world! How are you doing today?",
    "URLs like https://example.com/path?query=1&other=two#frag should survive.",
    "Email me at someone.name+tag@example.org before 5 p.m.",
    "Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal.",
    "GPT-4, LLaMA-3, Qwen2.5 and Gemma-3 are all large language models.",
    "CamelCaseWords and snake_case_words and kebab-case-words look different.",
    "ALL CAPS SENTENCES SHOUT AT THE READER!",
    "the end.",
]

CONTRACTIONS = [
    "it's", "don't", "they're", "we've", "I'm", "you'll", "he'd", "she's", "can't", "won't",
    "IT'S", "DON'T", "THEY'RE", "WE'VE", "I'M", "YOU'LL", "HE'D", "It'S", "Don'T", "They'Re",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D",
    "rock'n'roll", "o'clock", "y'all'd've", "'tis", "ma'am", "the '90s",
    "it\u2019s", "don\u2019t",
]

CJK = [
    "我爱自然语言处理。", "今天天气很好，我们去公园散步吧！", "机器学习是人工智能的一个分支。",
    "北京是中华人民共和国的首都。", "你好，世界！", "这是一个测试句子，包含标点符号：逗号、句号。",
    "日本語のテキストも正しく処理する必要があります。", "こんにちは、世界！", "東京タワーは高いです。",
    "カタカナとひらがなと漢字が混ざっています。", "ｶﾀｶﾅ半角もあります。",
    "안녕하세요, 세계!", "한국어 문장도 토큰화해야 합니다.", "서울은 대한민국의 수도입니다.",
    "繁體中文：臺灣的風景很美麗。", "𠀀𠀁𪚥 rare CJK extension characters",
]

EMOJI = [
    "😀", "😂🤣", "👍", "👍🏽", "👋🏿", "🧑🏻\u200d💻", "👨\u200d👩\u200d👧\u200d👦",
    "🏳\ufe0f\u200d🌈", "🇫🇷🇯🇵🇺🇸", "1\ufe0f\u20e3", "❤\ufe0f", "🫠", "🐍 python", "🚀🚀🚀",
    "👩🏾\u200d🔬", "🤷\u200d♀\ufe0f", "✅ done ❌ failed", "☕️", "🦀 rust",
]

CODE = [
    "def main(argv):\treturn 0  # entry point",
    "    for i in range(10):",
    "        print(f\"{i:>3} -> {i * i}\")",
    "if __name__ == \"__main__\":",
    "int main(int argc, char **argv) { return argc > 1 ? 0 : 1; }",
    "#include <stdio.h>",
    "    printf(\"%d\\n\", x);",
    "static const uint32_t table[4] = {0x1F, 0xFFFF, 0x10FFFF, 42u};",
    "{\"name\": \"gomlx\", \"version\": \"0.1.0\", \"tags\": [\"mlx\", \"llm\"], \"ok\": true}",
    "[1, 2, 3, {\"a\": null, \"b\": -1.5e-10}]",
    "x = lambda y: y ** 2 if y != 0 else None",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "<div class=\"container\"><p>Hello &amp; welcome</p></div>",
    "git commit -m 'fix: handle empty input' && git push origin main",
    "fn add(a: i32, b: i32) -> i32 { a + b }",
    "const x = arr.map((v) => v * 2).filter(Boolean);",
    "\t\tif (p == NULL) {",
    "/* comment */ // another comment",
    "$ echo $HOME | sed 's/a/b/g' > out.txt 2>&1",
]

NUMBERS = [
    "0", "7", "42", "123", "1234", "12345", "1234567890", "3.14159265358979",
    "1,000,000", "1 000 000", "2024-01-15", "+1 (555) 123-4567", "99.9%", "$1,299.99",
    "0x7fffffff", "1e-9", "６７８", "٣٤٥", "१२३", "Ⅻ", "½ ¾", "²³",
    "31415926535897932384626433832795028841971693993751",
]

PUNCT = [
    "!!!", "...", "?!?!", "---", "***", "((()))", "<<>>", "@#$%^&*", ";;", "::", "~~~",
    "«quoted»", "„German“", "「Japanese」", "—em dash—", "…", "¿Qué?", "¡Hola!",
    "!!!???...", "=====", "->", "=>", "!=", "<=", ">=", "&&", "||",
]

# Composed and decomposed forms that NFC must bring together.
ACCENTS = [
    "café", "cafe\u0301", "naïve", "nai\u0308ve", "Å", "A\u030a", "Å", "ﬁ ligature",
    "Ti\u00ea\u0301ng Vi\u00ea\u0323t", "Tie\u0302\u0301ng Vie\u0323\u0302t", "Tiếng Việt",
    "\u1112\u1161\u11ab\u1100\u1173\u11af", "한글", "a\u0301\u0323", "a\u0323\u0301",
    "e\u0301\u0301\u0301", "Ελληνικά", "Ε\u0301λληνικα\u0301", "ñ n\u0303 Ñ N\u0303",
    "Ω Ω", "Å Å", "\u0958\u0959", "ǅ ǆ Ǆ", "Zürich Zu\u0308rich", "Øresund",
    "crème brûlée", "cre\u0300me bru\u0302le\u0301e", "ḱṷṓn", "\u0344 \u0F73",
]

RTL = [
    "مرحبا بالعالم", "العربية لغة جميلة ١٢٣", "שלום עולם", "עברית: 2024 שנה",
    "English then עברית then English", "فارسی: سلام دنیا", "اردو میں خوش آمدید",
]

OTHER = [
    "Привет, мир! Съешь же ещё этих мягких французских булок.", "Γειά σου Κόσμε",
    "สวัสดีชาวโลก", "नमस्ते दुनिया", "ক্ষুধার্ত বাংলা", "ಕನ್ನಡ", "Հայերեն", "ქართული ენა",
    "∀x ∈ ℝ: x² ≥ 0", "∑_{i=1}^{n} i = n(n+1)/2", "α β γ δ → ∞", "© ® ™ § ¶ †",
    "zero\u200bwidth", "non\u00a0breaking space", "ideographic\u3000space", "thin\u2009space",
    "line\u2028separator", "next\u0085line", "mongolian\u180evowel", "soft\u00adhyphen",
    "tab\there", "vertical\x0btab", "form\x0cfeed", "bell\x07char", "nul-ish \x01\x02",
    "carriage\rreturn", "mixed\r\x0b\x0c spaces",
    "it'\u017f fine", "'\u212a kelvin", "\u0130stanbul'S", "\ufeffbyte order mark", "\U0010fffd private",
]

SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>",
    "<|start_header_id|>user<|end_header_id|>", "<|im_start|>", "<|im_end|>",
    "<|im_start|>user\u2028hi<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<bos>",
    "<eos>", "<start_of_turn>", "<end_of_turn>", "<start_of_turn>model", "<pad>",
    "<|im_start", "im_end|>", "< s>", "<s >", "<<s>>", "</s></s>", "<|eot_id|><|eot_id|>",
    "<unused0>", "<mask>", "<|reserved_special_token_0|>", "<think>", "</think>",
]

SPACES = ["", " ", "  ", "   ", "    ", "\t", "\t\t", " \t ", "     ", "          "]


def frag(rng):
    pool = rng.choice([PROSE, PROSE, CONTRACTIONS, CJK, EMOJI, CODE, NUMBERS, PUNCT, ACCENTS,
                       RTL, OTHER, SPECIALS])
    return rng.choice(pool)


def mixed_line(rng):
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(frag(rng))
        parts.append(rng.choice(SPACES[:4] + [" ", " ", " "]))
    line = "".join(parts)
    r = rng.random()
    if r < 0.1:
        line = rng.choice(SPACES[1:]) + line
    elif r < 0.2:
        line = line + rng.choice(SPACES[1:])
    return line


def main():
    rng = random.Random(20241126)
    lines = []
    # Every fragment alone, and with a leading space, so each is seen plainly.
    for group in (PROSE, CONTRACTIONS, CJK, EMOJI, CODE, NUMBERS, PUNCT, ACCENTS, RTL, OTHER, SPECIALS):
        for f in group:
            lines.append(f)
            lines.append(" " + f)
    # Special tokens glued to words and inside sentences.
    for s in SPECIALS:
        lines.append("Hello" + s + "world")
        lines.append("Hello " + s + " world")
        lines.append(s + "Hello")
        lines.append("  " + s + "  ")
    # Contractions in context, both cases.
    for c in CONTRACTIONS:
        lines.append("I think " + c + " fine and " + c.upper() + " too")
    # Whitespace-only and whitespace-heavy lines.
    lines += ["", " ", "  ", "\t", " \t", "\t ", "                ", "word  word   word    word",
              "trailing spaces   ", "   leading spaces", "a\tb\t\tc", "  \t  mixed \t indent",
              "x" + " " * 50 + "y", " " * 100]
    # Numbers of every length.
    for n in range(1, 25):
        lines.append("".join(str((i * 7 + n) % 10) for i in range(n)))
        lines.append("n=" + "".join(str((i * 3 + n) % 10) for i in range(n)) + ".")
    # Long lines stress the merge loop.
    lines.append("".join(CJK) * 6)
    lines.append(" ".join(PROSE) * 2)
    lines.append("a" * 3000)
    lines.append("ab" * 1000)
    lines.append("🙂" * 300)
    lines.append("9" * 500)
    lines.append("!?" * 400)
    lines.append("\u0301" * 50 + "e" + "\u0301" * 50)
    # Random mixtures fill the rest.
    while len(lines) < 2400:
        lines.append(mixed_line(rng))
    for line in lines:
        assert "\n" not in line
    with open(OUT, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d lines, %d bytes" % (OUT, len(lines), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
