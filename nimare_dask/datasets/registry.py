"""Which Neurosynth / NeuroQuery files exist, where they are, and their SHA-256 checksums.

The file names and the pinned repository commits are those NiMARE 0.22.1 downloads
(``nimare/resources/database_file_manifest.json`` and ``nimare/extract``). Checksums were
computed from unchanged copies of the public files; files without a recorded checksum are
downloaded with a warning that they could not be verified.
"""

from __future__ import annotations

#: Raw-file base URLs (NiMARE's pinned commits of the public data repositories).
BASE_URLS = {
    "neurosynth": (
        "https://github.com/neurosynth/neurosynth-data/raw/"
        "209c33cd009d0b069398a802198b41b9c488b9b7/"
    ),
    "neuroquery": (
        "https://github.com/neuroquery/neuroquery_data/raw/"
        "4580f86267fb7c14ac1f601e298cbed898d79f2d/data/"
    ),
}

_LDA = [(f"LDA{k}", "abstract", "weight") for k in (50, 100, 200, 400)]
_NQ_SOURCES = ("abstract", "body", "keywords", "title")

#: (vocab, source, type) combinations available per database and version.
FEATURE_SETS: dict[str, dict[str, list[tuple[str, str, str]]]] = {
    "neurosynth": {
        "3": [("terms", "abstract", "tfidf")],
        "4": [("terms", "abstract", "tfidf")],
        "5": [("terms", "abstract", "tfidf")],
        "6": [("terms", "abstract", "tfidf"), *_LDA],
        "7": [("terms", "abstract", "tfidf"), *_LDA],
    },
    "neuroquery": {
        "1": [
            ("neuroquery6308", "combined", "tfidf"),
            *[("neuroquery7547", s, "count") for s in _NQ_SOURCES],
            *[("neuroquery156521", s, "count") for s in _NQ_SOURCES],
        ]
    },
}

#: SHA-256 of the files we could verify (copies of the public files, unchanged).
SHA256 = {
    # Neurosynth version 7 (July 2018)
    "data-neurosynth_version-7_coordinates.tsv.gz": (
        "17135be3e08a0ab045896c77217e8463086543a0817d52a6a88c8e32c1161616"
    ),
    "data-neurosynth_version-7_metadata.tsv.gz": (
        "8acde7de2a14ee2a12b406e50a8805e83288b0bc78924ddb36879d496dfb757b"
    ),
    "data-neurosynth_version-7_vocab-LDA50_keys.tsv": (
        "7d2c872af784eb0bb96e7f2d63ba5c699cd002d3f58baa60353d9450c9431bac"
    ),
    "data-neurosynth_version-7_vocab-LDA50_metadata.json": (
        "d803b63c1b9afa4e65503b07c087f16304147cb236c8d82e7d79e4e2339e308f"
    ),
    "data-neurosynth_version-7_vocab-LDA50_source-abstract_type-weight_features.npz": (
        "dff7606079404b8496be4baca35c0d261e91d4ac6ff5c5595e1ef519e598a571"
    ),
    "data-neurosynth_version-7_vocab-LDA50_vocabulary.txt": (
        "57a5fba4d3ee97cfcbf73a13d0631a1d9709a53c5a1fdf6d173f04ac8bb8f302"
    ),
    "data-neurosynth_version-7_vocab-terms_vocabulary.txt": (
        "71c1858c5eb1bcc79854198bbca234569731efdc382c6205a9e46495379614af"
    ),
    # NeuroQuery version 1
    "data-neuroquery_version-1_coordinates.tsv.gz": (
        "b97cf50346dc8a6f78b3c02c8a19680679d7dbdf35f760a1032e46c2cad3666c"
    ),
    "data-neuroquery_version-1_metadata.tsv.gz": (
        "d84d2c7b2e2ca1692381419833fde043fb42d279014104c3c957feeeece140ea"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_source-abstract_type-count_features.npz": (
        "79c38b2515a316b711eef1ef1737ba57ce720d79d8506b7a08da6639418cf60a"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_source-keywords_type-count_features.npz": (
        "01c51de4b0f58194725c0c160e529c1c59cd812b83e51a693924be824f0e9c1b"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_source-title_type-count_features.npz": (
        "c8243762f0f4c705c7ec60246c25e36785f0ea555dc914f85ede08a623afec74"
    ),
    "data-neuroquery_version-1_vocab-neuroquery7547_vocabulary.txt": (
        "ae4a13380451797735d3df142fb8b4b3792056fbf79471454aa40e12bec7717b"
    ),
}


def database_files(database: str, version: str, combos: list[tuple[str, str, str]]) -> dict:
    """File names (not paths) of one database version and the chosen feature sets.

    Returns
    -------
    dict
        ``{"coordinates": name, "metadata": name, "features": [{"features": name,
        "vocabulary": name, ...}]}`` (LDA sets also list ``keys`` and ``metadata``).
    """
    stem = f"data-{database}_version-{version}"
    features = []
    for vocab, source, type_ in combos:
        entry = {
            "features": f"{stem}_vocab-{vocab}_source-{source}_type-{type_}_features.npz",
            "vocabulary": f"{stem}_vocab-{vocab}_vocabulary.txt",
        }
        if vocab.startswith("LDA"):
            entry["keys"] = f"{stem}_vocab-{vocab}_keys.tsv"
            entry["metadata"] = f"{stem}_vocab-{vocab}_metadata.json"
        features.append(entry)
    return {
        "coordinates": f"{stem}_coordinates.tsv.gz",
        "metadata": f"{stem}_metadata.tsv.gz",
        "features": features,
    }
