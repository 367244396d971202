using System.Collections;
using Microsoft.AspNetCore.Http.Features;

namespace Relay.L4;

/// <summary>
/// A feature collection for the handful of features Kestrel sets on a connection: a small array
/// searched in order, about 120 B, where <see cref="FeatureCollection"/> keeps a dictionary (about
/// 310 B with Kestrel's five). Not thread-safe, as <see cref="FeatureCollection"/> is not.
/// </summary>
internal sealed class SmallFeatureCollection : IFeatureCollection
{
    private KeyValuePair<Type, object>[] _features = [];
    private int _count;
    private int _revision;

    public bool IsReadOnly => false;

    public int Revision => _revision;

    public object? this[Type key]
    {
        get
        {
            ArgumentNullException.ThrowIfNull(key);
            var index = IndexOf(key);
            return index >= 0 ? _features[index].Value : null;
        }
        set
        {
            ArgumentNullException.ThrowIfNull(key);
            var index = IndexOf(key);
            if (value is null)
            {
                if (index >= 0)
                {
                    _count--;
                    _features[index] = _features[_count];
                    _features[_count] = default;
                    _revision++;
                }

                return;
            }

            if (index >= 0)
            {
                _features[index] = new KeyValuePair<Type, object>(key, value);
            }
            else
            {
                if (_count == _features.Length)
                {
                    Array.Resize(ref _features, _count + 4);
                }

                _features[_count++] = new KeyValuePair<Type, object>(key, value);
            }

            _revision++;
        }
    }

    public TFeature? Get<TFeature>() => this[typeof(TFeature)] is TFeature feature ? feature : default;

    public void Set<TFeature>(TFeature? instance) => this[typeof(TFeature)] = instance;

    public IEnumerator<KeyValuePair<Type, object>> GetEnumerator()
    {
        for (var i = 0; i < _count; i++)
        {
            yield return _features[i];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private int IndexOf(Type key)
    {
        for (var i = 0; i < _count; i++)
        {
            if (_features[i].Key == key)
            {
                return i;
            }
        }

        return -1;
    }
}
