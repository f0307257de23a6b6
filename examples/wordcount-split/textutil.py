def load_words(path):
    with open(path, encoding="utf-8") as f:
        return {w.strip() for w in f if w.strip()}
