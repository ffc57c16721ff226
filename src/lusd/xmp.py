"""XMP packets: build one from qualified property names, parse one back (stdlib XML only)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

#: Prefixes lusd writes and reads, with their namespace URIs.
NAMESPACES: dict[str, str] = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "lusd": "urn:lusd:edit:1.0/",
}
_PREFIX_OF = {uri: prefix for prefix, uri in NAMESPACES.items()}
_RDF = NAMESPACES["rdf"]
_HEADER = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_TRAILER = '\n<?xpacket end="w"?>'

Value = str | Sequence[str]
#: Characters XML 1.0 cannot carry (a prompt might contain them); they are dropped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _qname(name: str) -> str:
    prefix, sep, local = name.partition(":")
    if not sep or prefix not in NAMESPACES:
        raise ValueError(f"XMP property {name!r} needs a known prefix ({', '.join(NAMESPACES)})")
    return f"{{{NAMESPACES[prefix]}}}{local}"


def build_packet(properties: Mapping[str, Value]) -> str:
    """An XMP packet with one rdf:Description; a sequence value becomes an rdf:Seq."""
    for prefix, uri in NAMESPACES.items():
        ET.register_namespace(prefix, uri)
    meta = ET.Element(_qname("x:xmpmeta"))
    rdf = ET.SubElement(meta, _qname("rdf:RDF"))
    description = ET.SubElement(rdf, _qname("rdf:Description"), {_qname("rdf:about"): ""})
    for name, value in properties.items():
        element = ET.SubElement(description, _qname(name))
        if isinstance(value, str):
            element.text = _NOT_XML.sub("", value)
        else:
            seq = ET.SubElement(element, _qname("rdf:Seq"))
            for item in value:
                ET.SubElement(seq, _qname("rdf:li")).text = _NOT_XML.sub("", str(item))
    return _HEADER + ET.tostring(meta, encoding="unicode") + _TRAILER


def parse_packet(packet: str | bytes) -> dict[str, str | list[str]]:
    """Properties of every rdf:Description, as ``prefix:Name`` (``{uri}Name`` if unknown).

    Reads both spellings writers use: attributes and child elements (plain text,
    ``rdf:resource`` or an rdf:Seq/Bag/Alt list). Raises ValueError for invalid XML.
    """
    text = packet.decode("utf-8", errors="replace") if isinstance(packet, bytes) else packet
    body = text
    for opening, closing in (("<x:xmpmeta", "</x:xmpmeta>"), ("<rdf:RDF", "</rdf:RDF>")):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            body = text[start : end + len(closing)]
            break
    try:
        root = ET.fromstring(body.strip().lstrip("\ufeff"))
    except ET.ParseError as error:
        raise ValueError(f"XMP is not valid XML ({error})") from None
    found: dict[str, str | list[str]] = {}
    for description in root.iter(f"{{{_RDF}}}Description"):
        for key, value in description.attrib.items():
            if not key.startswith(f"{{{_RDF}}}"):
                found[_short(key)] = value
        for child in description:
            found[_short(child.tag)] = _value(child)
    return found


def _value(element: ET.Element) -> str | list[str]:
    resource = element.get(f"{{{_RDF}}}resource")
    if resource is not None:
        return resource
    for kind in ("Seq", "Bag", "Alt"):
        container = element.find(f"{{{_RDF}}}{kind}")
        if container is not None:
            return [li.text or "" for li in container.findall(f"{{{_RDF}}}li")]
    return element.text or ""


def _short(tag: str) -> str:
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        prefix = _PREFIX_OF.get(uri)
        return f"{prefix}:{local}" if prefix else tag
    return tag
