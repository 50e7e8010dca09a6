"""multipart/form-data bodies (POST /v1/files, POST /v1/uploads/{id}/parts) parsed with
python-multipart, at the HTTP edge: the domain receives the parts (`files.FilePart`) and text fields.
Bodies reaching Lambda are a few MB at most, so parts are kept in memory."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File, FormParser, parse_options_header

from batchgate import errors
from batchgate.domain.files import FilePart, NamedFile, named_file


@dataclass
class Form:
    """Every part by name (the last of a repeated name wins); text fields have no filename."""
    parts: dict[str, FilePart] = field(default_factory=dict)

    def part(self, name: str) -> FilePart | None:
        """A part as sent (None: no part of that name)."""
        return self.parts.get(name)

    def file(self, name: str) -> NamedFile:
        """A binary part, required, under its safe filename (`files.named_file`)."""
        return named_file(self.parts.get(name), name)

    def text(self, name: str) -> str | None:
        part = self.parts.get(name)
        if part is None:
            return None
        try:
            return part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.invalid_value(name, f"Invalid value for '{name}': not UTF-8 text.") from None

    def fields(self, *, nested: tuple[str, ...] = ()) -> dict[str, Any]:
        """Text fields as a dict for model validation. Objects named in `nested` are read in both
        forms clients use: bracket parts (`expires_after[seconds]=3600`, what the SDK sends) or
        one part holding a JSON object (`expires_after={"anchor": ...}`)."""
        out: dict[str, Any] = {}
        for name, part in self.parts.items():
            if part.filename is not None:
                continue
            base, _, rest = name.partition("[")
            if base in nested and rest.endswith("]"):
                target = out.setdefault(base, {})
                if isinstance(target, dict):
                    target[rest[:-1]] = self.text(name)
            elif base in nested and not rest:
                try:
                    out[base] = orjson.loads(part.data)
                except orjson.JSONDecodeError:
                    raise errors.invalid_type(name, "an object", self.text(name)) from None
            else:
                out[name] = self.text(name)
        return out


def parse_form(body: bytes, content_type: str | None) -> Form:
    """Parse a multipart/form-data body, or answer 400 saying what the request should have been."""
    mime, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise errors.InvalidRequest(
            "This endpoint expects a multipart/form-data body (Content-Type: multipart/form-data; "
            "boundary=...).", code="invalid_content_type")
    form = Form()

    def on_field(f: Field) -> None:
        if f.field_name is not None:
            form.parts[f.field_name.decode("utf-8", "replace")] = FilePart(f.value or b"")

    def on_file(f: File) -> None:
        if f.field_name is None:
            return
        f.file_object.seek(0)
        name = (f.file_name or b"").decode("utf-8", "replace")
        form.parts[f.field_name.decode("utf-8", "replace")] = FilePart(f.file_object.read(), name)

    try:
        # Keep every file in memory: the body already is, and /tmp spills would only cost time.
        parser = FormParser("multipart/form-data", on_field, on_file, boundary=boundary,
                            config={"MAX_MEMORY_FILE_SIZE": float("inf")})
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise errors.InvalidRequest(f"Could not parse the multipart/form-data body: {exc}",
                                    code="invalid_multipart") from None
    return form
