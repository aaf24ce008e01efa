"""The node's settings: config.json (who it is, which cluster, where the master is) and
board.json (what the hardware is), both read from the working directory (the board's
flash). A bad file stops the node at boot with a message naming the field."""

import json

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_UDP_DISCOVERY_PORT = const(5881)
# END GENERATED

_DEFAULT_SLOTS = const(2)
_LINKS = const(("tcp", "serial"))
# board.json's prose and the simulator's model: read by people and the host, never by the
# node, which keeps its board definition for the whole boot (ESP32: about 1.9 KB of heap)
_NOT_KEPT = const(("description", "heap_note", "native_note", "source", "model"))
# What the node reads of board.json after the boot (kept()): its name, and where the link
# is TCP, what opens the network (worker_up.open_net); of config.json, a serial node keeps
# no address, discovery or IP settings (the wire has one peer)
_BOARD_TCP = const(("name", "net_driver", "nic", "spi"))
_TCP_ONLY = const(("master", "discovery_port", "discovery_host", "ifconfig"))


class ConfigError(ValueError):
    pass


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        raise ConfigError(path + " is missing")
    except ValueError:
        raise ConfigError(path + " is not valid JSON")


def _need(doc, path, name, kind):
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(path + ": field " + name + " is missing or of the wrong type")
    return value


def load_board(path="board.json"):
    board = _read_json(path)
    _need(board, path, "name", str)
    _need(board, path, "heap_bytes", int)
    _need(board, path, "max_frame", int)
    _need(board, path, "slots", int)
    links = _need(board, path, "links", list)
    for link in links:
        if link not in _LINKS:
            raise ConfigError(path + ": unknown link " + str(link))
    for key in _NOT_KEPT:
        board.pop(key, None)
    return board


def parse_master(text):
    """"host:port" -> (host, port); "" -> None (find it by UDP discovery)."""
    if not text:
        return None
    colon = text.rfind(":")
    if colon <= 0:
        raise ConfigError("config.json: master must be 'host:port' or empty")
    try:
        port = int(text[colon + 1:])
    except ValueError:
        raise ConfigError("config.json: master port is not a number")
    if not 0 < port < 65536:
        raise ConfigError("config.json: master port out of range")
    return text[:colon], port


def load_config(board, path="config.json"):
    """config.json merged with the board's defaults, with the key decoded to bytes."""
    doc = _read_json(path)
    cfg = {}
    cfg["node_id"] = _need(doc, path, "node_id", str)
    cfg["cluster"] = _need(doc, path, "cluster", str)
    key_hex = _need(doc, path, "key", str)
    try:
        cfg["key"] = bytes.fromhex(key_hex)
    except ValueError:
        raise ConfigError(path + ": key must be hex")
    if len(cfg["key"]) < 16:
        raise ConfigError(path + ": key must be at least 16 bytes")
    cfg["master"] = parse_master(doc.get("master") or "")
    link = doc.get("link") or board["links"][0]
    if link not in board["links"]:
        raise ConfigError(path + ": link " + str(link) + " is not one this board has")
    cfg["link"] = link
    port = doc.get("discovery_port", _UDP_DISCOVERY_PORT)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(path + ": discovery_port must be a port number")
    cfg["discovery_port"] = port
    cfg["discovery_host"] = doc.get("discovery_host") or "255.255.255.255"
    slots = doc.get("slots", board.get("slots", _DEFAULT_SLOTS))
    if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
        raise ConfigError(path + ": slots must be a positive int")
    cfg["slots"] = slots
    cfg["max_frame"] = board["max_frame"]
    cfg["ifconfig"] = doc.get("ifconfig")
    if link == "serial":
        for key in _TCP_ONLY:
            del cfg[key]
    return cfg


def kept(board, link):
    """What the node keeps of `board` (load_board's) for the whole boot on `link`."""
    if link == "serial":
        return {"name": board["name"]}
    return {key: board[key] for key in _BOARD_TCP if key in board}
