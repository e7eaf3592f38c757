"""Content generators of the simulator: workflow inputs, step params, outputs and error texts.

Each maker draws from the `random.Random` it is given and nothing else, so a plan built from
the same seed gets the same content. A task maker answers
`(params, output, primary, http_method, http_url)`; `MISSING` as `primary` means the step
shows no `primary` field.
"""

from __future__ import annotations

import random
from typing import Any

#: A step's `primary` when the API leaves the field out (not the same as a JSON null).
MISSING: Any = object()

_PROMPTS = (
    "A majestic mountain landscape at dawn",
    "A cosy café ☕ in Kyoto with 日本語 signage on a rainy evening",
    "Neon-lit street market in São Paulo, cinematic",
    "A rat graduating from law school, oil painting",
    "Минималистичный логотип для кофейни",
    "An astronaut reading a book on the Moon 🌕",
    "Portrait of a naïve robot learning to paint — watercolour",
    "مدينة المستقبل عند الغروب",
    "Product photo of a ceramic mug, studio lighting, 50mm",
    "Whimsical forest with glowing mushrooms",
    'A sign that says "Open 24/7" in a snowy \\ icy alley',
)
_SENTENCES = (
    "The valley wakes slowly under a blush of pink light.",
    "Steam curls from a paper cup as the rain taps on the awning.",
    "Every detail is rendered with soft, diffused shadows.",
    "Le soleil se couche derrière les toits de zinc.",
    "夜の街に雨の音が静かに響く。",
    "A lone figure walks towards the horizon, coat flapping in the wind.",
    "Colours: teal, amber and a hint of magenta.",
    "The camera pulls back to reveal the whole city 🌆.",
    "Tagline: “Nothing ends quietly.”",
)
_SYSTEM_PROMPTS = (
    "You are a helpful assistant",
    "You write vivid, cinematic scene descriptions.",
    "You are a concise copywriter. Réponds en français si on te le demande.",
)
_STYLES = ("photorealistic", "watercolour", "anime", "cinematic", "isométrique", "low-poly")
_ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:2")
_VOICES = ("Rachel", "Aiyana", "Jörg", "Sakura", "Mateo")


def _text(rng: random.Random, count: tuple[int, int] = (2, 4)) -> str:
    return " ".join(rng.sample(_SENTENCES, rng.randint(*count)))


def _url(rng: random.Random, folder: str, extension: str) -> str:
    return (
        f"https://storage.googleapis.com/eachlabs-sim/{folder}/"
        f"{rng.getrandbits(64):016x}.{extension}"
    )


def _upstream_text(upstream: list[tuple[Any, Any]], fallback: str) -> str:
    for output, _primary in upstream:
        if isinstance(output, str) and not output.startswith("https://"):
            return output[:400]
    return fallback


def _upstream_url(rng: random.Random, upstream: list[tuple[Any, Any]], folder: str) -> str:
    for _output, primary in upstream:
        if isinstance(primary, str) and primary.startswith("https://"):
            return primary
    return _url(rng, folder, "png")


def _llm(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    prompt = next(
        (inputs[key] for key in ("prompt", "story", "logline", "topic") if key in inputs),
        rng.choice(_PROMPTS),
    )
    prompt = _upstream_text(upstream, prompt)
    params: dict[str, Any] = {
        "system_prompt": rng.choice(_SYSTEM_PROMPTS),
        "user_prompt": prompt,
        "max_output_tokens": rng.choice((256, 512, 1024, 2048)),
        "temperature": round(rng.uniform(0.0, 1.2), 2),
    }
    if rng.random() < 0.5:
        params["top_p"] = None if rng.random() < 0.5 else round(rng.uniform(0.5, 1.0), 2)
    if rng.random() < 0.3:
        params["stop"] = rng.sample(["\n\n", "###", "END", "。"], rng.randint(1, 3))
    if rng.random() < 0.4:
        params["stream"] = False
    if rng.random() < 0.3:
        params["response_format"] = {"type": rng.choice(("text", "json_object")), "strict": True}
    text = _text(rng)
    return params, text, text, None, None


def _text_to_image(
    rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]
) -> tuple:
    prompt = _upstream_text(upstream, inputs.get("prompt") or rng.choice(_PROMPTS))
    count = inputs.get("num_images") if isinstance(inputs.get("num_images"), int) else None
    count = count or rng.choice((1, 1, 2, 4))
    params: dict[str, Any] = {
        "prompt": prompt,
        "num_images": count,
        "aspect_ratio": rng.choice(_ASPECT_RATIOS),
        "guidance_scale": round(rng.uniform(1.5, 7.5), 1),
        "seed": None if rng.random() < 0.4 else rng.randint(0, 2**31 - 1),
        "output_format": rng.choice(("png", "jpeg", "webp")),
        "enable_safety_checker": rng.random() < 0.8,
    }
    if rng.random() < 0.3:
        params["loras"] = [
            {"path": f"https://huggingface.co/sim/lora-{rng.randint(1, 99)}", "scale": 0.8}
        ]
    if rng.random() < 0.3:
        params["size"] = {"width": rng.choice((768, 1024)), "height": rng.choice((768, 1024))}
    if rng.random() < 0.2:
        params["negative_prompt"] = ""
    urls = [_url(rng, "images", params["output_format"]) for _ in range(count)]
    return params, urls, urls[0], None, None


def _image_variations(
    rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]
) -> tuple:
    count = inputs.get("num_images", 2)
    params = {
        "image_url": inputs.get("image_url") or _url(rng, "uploads", "jpg"),
        "num_images": count,
        "strength": inputs.get("strength", 0.6),
        "seed": inputs.get("seed"),
        "resolution": rng.choice(("1K", "2K")),
    }
    urls = [_url(rng, "images", "png") for _ in range(count)]
    return params, urls, urls[0], None, None


def _video(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    params: dict[str, Any] = {"prompt": _upstream_text(upstream, rng.choice(_PROMPTS))}
    if upstream and isinstance(upstream[0][1], str) and upstream[0][1].startswith("https://"):
        params["image_url"] = upstream[0][1]
    duration = rng.choice((5, 8, 10))
    params.update(
        {
            "duration_seconds": duration,
            "resolution": rng.choice(("720p", "1080p")),
            "fps": 24,
            "generate_audio": rng.random() < 0.5,
            "negative_prompt": None if rng.random() < 0.5 else "blurry, low quality",
            "camera": {"movement": rng.choice(("dolly_in", "pan_left", "static")), "speed": 0.5},
        }
    )
    url = _url(rng, "videos", "mp4")
    if "image_url" in params:
        return params, url, url, None, None
    output = {
        "video_url": url,
        "thumbnail_url": _url(rng, "thumbnails", "jpg"),
        "duration_seconds": duration,
        "has_audio": params["generate_audio"],
    }
    return params, output, url, None, None


def _speech(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    params = {
        "text": _upstream_text(upstream, rng.choice(_SENTENCES)),
        "voice_id": inputs.get("voice") or rng.choice(_VOICES),
        "stability": round(rng.uniform(0.3, 0.8), 2),
        "similarity_boost": 0.75,
        "output_format": "mp3_44100_128",
        "language": rng.choice(("en", "ja", "fr", None)),
    }
    url = _url(rng, "audio", "mp3")
    return params, url, url, None, None


def _fetch_json(
    rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]
) -> tuple:
    sku = inputs.get("sku") or f"SKU-{rng.randint(10000, 99999)}"
    url = inputs.get("url") or f"https://api.shop-sim.example/v1/products/{sku}"
    params = {
        "headers": {"Accept": "application/json"},
        "query": {"locale": rng.choice(("fr-FR", "ja-JP", "en-US"))},
        "timeout_s": 30,
        "follow_redirects": True,
    }
    body = {
        "sku": sku,
        "title": rng.choice(("Mug en céramique ☕", "和紙ノート", "Desk lamp")),
        "price": round(rng.uniform(5, 120), 2),
        "in_stock": rng.random() < 0.8,
        "tags": rng.sample(["new", "eco", "gift", "sale"], 2),
        "discontinued_at": None,
    }
    return params, {"status_code": 200, "body": body}, 200, "GET", url


def _notify(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    url = f"https://hooks.example.com/eachlabs/{rng.getrandbits(48):012x}"
    params = {
        "headers": {"Content-Type": "application/json"},
        "body": {"video_url": _upstream_url(rng, upstream, "videos"), "ok": True},
        "timeout_s": 10,
    }
    return params, {"status_code": 204, "delivered": True}, True, "POST", url


def _moderate(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    params = {
        "function": "moderate_image",
        "image_url": _upstream_url(rng, upstream, "images"),
        "threshold": inputs.get("threshold", 0.8),
        "categories": ["nsfw", "violence"],
        "strict": rng.random() < 0.5,
    }
    is_safe = rng.random() < 0.9
    return params, is_safe, is_safe, None, None


def _verdict(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    score = next((p for _o, p in upstream if isinstance(p, float)), round(rng.random(), 4))
    threshold = inputs.get("threshold", 0.8)
    params = {"function": "moderation_verdict", "score": score, "threshold": threshold}
    is_safe = score < threshold
    output = {
        "is_safe": is_safe,
        "score": score,
        "labels": [] if is_safe else rng.sample(["nsfw", "violence", "weapons"], 1),
        "reviewed_by": None,
    }
    return params, output, is_safe, None, None


def _score(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    params = {
        "function": "score_quality",
        "source": inputs.get("url") or _url(rng, "uploads", "jpg"),
        "weights": {"sharpness": 0.4, "contrast": 0.6},
        "normalise": True,
        "notes": None,
    }
    score = round(rng.random(), 4)
    return params, score, score, None, None


def _package(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    audio_url = _upstream_url(rng, upstream, "audio")
    params = {
        "function": "package_assets",
        "audio_url": audio_url,
        "formats": ["mp3", "wav"],
        "metadata": {"title": inputs.get("topic", "Épisode"), "explicit": False},
        "bitrate_kbps": 128,
    }
    output = {
        "archive_url": _url(rng, "archives", "zip"),
        "files": [audio_url, audio_url.replace(".mp3", ".wav")],
        "size_bytes": rng.randint(200_000, 9_000_000),
        "duration_seconds": round(rng.uniform(30, 400), 1),
    }
    primary = {"archive_url": output["archive_url"]}
    if rng.random() < 0.3:
        return params, output, MISSING, None, None
    return params, output, primary, None, None


TASK_MAKERS = {
    "expand_prompt": _llm,
    "write_script": _llm,
    "caption": _llm,
    "text_to_image": _text_to_image,
    "image_variations": _image_variations,
    "image_to_video": _video,
    "text_to_video": _video,
    "text_to_speech": _speech,
    "fetch_json": _fetch_json,
    "notify_webhook": _notify,
    "moderate_image": _moderate,
    "score_quality": _score,
    "moderation_verdict": _verdict,
    "package_assets": _package,
}

MODEL_ERRORS = (
    ("ModelTimeout", "Model request timed out after {seconds} seconds"),
    ("ProviderError", "Upstream provider answered 500 Internal Server Error"),
    ("ContentPolicyViolation", "The request was rejected by the provider's safety filter"),
    ("InvalidInput", "Parameter 'image_url' could not be downloaded: 403 Forbidden"),
)
HTTP_ERRORS = (
    ("HTTPError", "{method} {url} answered 502 Bad Gateway"),
    ("RequestTimeout", "{method} {url} timed out after {seconds} seconds"),
)
PYTHON_ERRORS = (
    ("PythonException", "KeyError: 'width'"),
    ("PythonException", "ValueError: could not decode image bytes"),
    ("ExecutionTimeout", "Python step exceeded {seconds} seconds"),
)


def _inputs_image_prompt(rng: random.Random) -> dict[str, Any]:
    return {
        "prompt": rng.choice(_PROMPTS),
        "style": rng.choice(_STYLES),
        "num_images": rng.choice((1, 2, 4)),
        "seed": None if rng.random() < 0.5 else rng.randint(0, 99999),
        "enhance_prompt": rng.random() < 0.5,
        "tags": rng.sample(["poster", "social", "draft", "client-x"], rng.randint(0, 3)),
        "options": {"aspect_ratio": rng.choice(_ASPECT_RATIOS), "guidance": 3.5},
    }


def _inputs_product(rng: random.Random) -> dict[str, Any]:
    return {
        "sku": f"SKU-{rng.randint(10000, 99999)}",
        "background": rng.choice(("white marble", "bois clair", "studio grey")),
        "angle_degrees": rng.choice((0, 35, 90)),
        "shadow": rng.random() < 0.7,
        "locale": rng.choice(("fr-FR", "ja-JP", "en-US")),
    }


def _inputs_story(rng: random.Random) -> dict[str, Any]:
    return {
        "story": rng.choice(_PROMPTS),
        "duration_seconds": rng.choice((5, 10)),
        "voiceover": rng.random() < 0.5,
        "characters": rng.sample(["Rémy", "Juge Hibou", "Captain Mochi", "Ada"], 2),
        "webhook": None,
    }


def _inputs_caption(rng: random.Random) -> dict[str, Any]:
    return {
        "image_url": _url(rng, "uploads", "jpg"),
        "tone": rng.choice(("playful", "formal", "poétique")),
        "max_words": rng.choice((12, 20, 40)),
        "hashtags": rng.random() < 0.5,
    }


def _inputs_variations(rng: random.Random) -> dict[str, Any]:
    return {
        "image_url": _url(rng, "uploads", "png"),
        "num_images": rng.randint(2, 4),
        "strength": round(rng.uniform(0.3, 0.9), 2),
        "seed": None,
    }


def _inputs_trailer(rng: random.Random) -> dict[str, Any]:
    return {
        "logline": rng.choice(_PROMPTS),
        "genre": rng.choice(("thriller", "comédie", "sci-fi")),
        "rating": "PG-13",
        "length_seconds": 8,
    }


def _inputs_moderation(rng: random.Random) -> dict[str, Any]:
    return {
        "url": _url(rng, "uploads", "jpg"),
        "threshold": round(rng.uniform(0.6, 0.95), 2),
        "report": {"notify": rng.random() < 0.5, "channels": ["email", "slack"]},
    }


def _inputs_podcast(rng: random.Random) -> dict[str, Any]:
    return {
        "topic": rng.choice(_PROMPTS),
        "voice": rng.choice(_VOICES),
        "minutes": rng.randint(1, 5),
        "music": None,
    }


INPUT_MAKERS = {
    "image_prompt": _inputs_image_prompt,
    "product": _inputs_product,
    "story": _inputs_story,
    "caption": _inputs_caption,
    "variations": _inputs_variations,
    "trailer": _inputs_trailer,
    "moderation": _inputs_moderation,
    "podcast": _inputs_podcast,
}
