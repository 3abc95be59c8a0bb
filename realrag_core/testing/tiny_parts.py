"""Tiny parts every tiny generator is built from: CLIP's real BPE tokenizer, a T5 and a LLaMA-layout tokenizer, small
text-encoder and VAE configs."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

PHI3_SPECIALS = ["<|user|>", "<|assistant|>", "<|end|>", "<|diffusion|>"]


def clip_tokenizer_files(folder: Path) -> Path:
    """CLIP's BPE vocabulary (49,408 tokens) as ``vocab.json`` + ``merges.txt``, from open_clip's bundled merges,
    built the way CLIP's tokenizer builds it (bytes, bytes + </w>, merges, two specials)."""
    import open_clip.tokenizer as oct

    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(oct.default_bpe(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    byte_chars = list(oct.bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(p) for p in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n")
    return folder


def clip_tokenizer():
    """transformers' ``CLIPTokenizer`` over CLIP's real BPE vocabulary (see :func:`clip_tokenizer_files`)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        files = clip_tokenizer_files(Path(tmp))
        return CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=77)


def clip_text_config(hidden: int, **extra):
    """A tiny ``CLIPTextConfig`` with CLIP's vocabulary, context length and special tokens."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        **extra,
    )


def tiny_vae(sample_size: int, levels: int = 2, **extra):
    """An ``AutoencoderKL`` with 4 latent channels and ``levels`` levels (downsampling x2^(levels-1))."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 32, 32, 32)[:levels],
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        norm_num_groups=8,
        sample_size=sample_size * 2 ** (levels - 1),
        **extra,
    )


def clip_words(count: int) -> list[str]:
    """The first ``count`` whole words of CLIP's BPE merges (open_clip's bundled file), in merge order."""
    import open_clip.tokenizer as oct

    words: list[str] = []
    with gzip.open(oct.default_bpe(), "rt", encoding="utf-8") as f:
        for line in f.read().split("\n")[1:]:
            word = "".join(line.split())
            if word.endswith("</w>") and word[:-4].isalpha() and len(word) > 5 and word[:-4] not in words:
                words.append(word[:-4])
                if len(words) == count:
                    break
    return words


def t5_tokenizer(words: int = 2000):
    """transformers' ``T5Tokenizer`` (a ``tokenizers`` Unigram model, T5's layout: <pad>=0, </s>=1, <unk>=2) over
    printable ASCII characters and CLIP's commonest whole words, scored by merge order; no sentinel ids."""
    import string

    from transformers import T5Tokenizer

    chars = [c for c in string.printable if not c.isspace()]
    pieces = [("▁", -2.0)] + [(f"▁{c}", -8.0) for c in chars] + [(c, -9.0) for c in chars]
    pieces += [(f"▁{w}", -3.0 - 4.0 * i / words) for i, w in enumerate(clip_words(words))]
    return T5Tokenizer(
        vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + pieces, extra_ids=0, model_max_length=512
    )


def t5_encoder(vocab_size: int, d_model: int):
    """A tiny ``T5EncoderModel`` (2 layers)."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=d_model,
            d_ff=64,
            d_kv=8,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
        )
    )


def llama_tokenizer(vocab_size: int = 1500):
    """transformers' ``LlamaTokenizer`` in LLaMA/Phi-3's layout (<unk>=0, <s>=1, </s>=2, the 256 byte-fallback
    tokens, BPE pieces with the ``▁`` word prefix, Phi-3's chat markers as special tokens), its BPE trained here with
    ``tokenizers`` on CLIP's commonest words plus the instruction and negative prompt OmniGen's processor writes."""
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    corpus = clip_words(3000) + ["Generate an image according to the following instructions", "a photo of a"]
    corpus += [
        "low quality, jpeg artifacts, ugly, duplicate, morbid, mutilated, extra fingers, mutated hands, poorly "
        "drawn hands, poorly drawn face, mutation, deformed, blurry, dehydrated, bad anatomy, bad proportions, "
        "extra limbs, cloned face, disfigured, gross proportions, malformed limbs, missing arms, missing legs, "
        "extra arms, extra legs, fused fingers, too many fingers."
    ]
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            show_progress=False,
            initial_alphabet=list(string.printable.strip()),
        ),
    )
    model = json.loads(bpe.to_str())["model"]
    tok = LlamaTokenizer(
        vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], add_bos_token=True, model_max_length=4096
    )
    tok.add_special_tokens({"additional_special_tokens": PHI3_SPECIALS})
    return tok
